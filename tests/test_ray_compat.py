"""docs/RAY_COMPAT.md stays true: each Ray name it marks same or differs exists under `runtime`,
each one it marks not supported does not, and every public name `runtime` exports is on it."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import runtime
import runtime.util
from runtime import exceptions
from runtime.api import RuntimeContext

PAGE = Path(__file__).resolve().parent.parent / "docs" / "RAY_COMPAT.md"
ROW = re.compile(r"^\| `([^`]+)` \| (same|differs|not supported|rayctl only) \|", re.MULTILINE)
# Ray's module -> ours (longest first)
MODULES = (("ray.util.scheduling_strategies.", "runtime.util.scheduling_strategies."),
           ("ray.exceptions.", "runtime.exceptions."), ("ray.util.", "runtime.util."),
           ("ray.", "runtime."))


def _rows() -> dict[str, str]:
    rows = dict(ROW.findall(PAGE.read_text()))
    assert len(rows) > 100, "the page's table rows no longer parse"
    return rows


def _ours(name: str) -> str:
    for theirs, mine in MODULES:
        if name.startswith(theirs):
            return mine + name[len(theirs):]
    return name


def _exists(name: str) -> bool:
    if name.startswith("RuntimeContext."):
        attr = name.split(".", 1)[1]
        fields = {f.name for f in dataclasses.fields(RuntimeContext)}
        return attr in fields or hasattr(RuntimeContext, attr)
    parts = _ours(name).split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(found, attr):
                return False
            found = getattr(found, attr)
        return True
    return False


def test_each_row_says_what_runtime_has() -> None:
    wrong = [f"{name}: marked {status}" for name, status in _rows().items()
             if _exists(name) != (status != "not supported")]
    assert not wrong, "docs/RAY_COMPAT.md is out of date: " + "; ".join(wrong)


def test_every_public_name_of_runtime_is_on_the_page() -> None:
    listed = {_ours(name) for name in _rows()}
    ours = {f"runtime.{n}" for n in runtime.__all__}
    ours |= {f"runtime.util.{n}" for n in runtime.util.__all__}
    ours |= {f"runtime.exceptions.{n}" for n, v in vars(exceptions).items()
             if inspect.isclass(v) and issubclass(v, BaseException) and not n.startswith("_")}
    ours |= {f"RuntimeContext.{n}" for n in dir(RuntimeContext) if not n.startswith("_")}
    ours |= {f"RuntimeContext.{f.name}" for f in dataclasses.fields(RuntimeContext)}
    missing = sorted(ours - listed)
    assert not missing, f"not on docs/RAY_COMPAT.md: {missing}"

"""What the launcher tests on SSH "hosts" share: the `rayctl` CLI through typer's runner, and the
two stubbed edges about installing rayctl on a host that is this machine with this venv already
(the wheel `up` builds, and `pip install` of it, which a `python3` shim turns into a no-op;
tests/test_launcher_wheel.py covers the real wheel)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from typer.testing import CliRunner, Result

from autoscaler.cli import app

# `python3 -m pip install ...` (the wheel install setup runs) succeeds without touching the
# venv; anything else runs this interpreter.
PYTHON_SHIM = textwrap.dedent(f"""\
    #!/bin/sh
    if [ "$1" = "-m" ] && [ "$2" = "pip" ] && [ "$3" = "install" ]; then
        echo "test host: rayctl is installed already"; exit 0
    fi
    exec {sys.executable} "$@"
""")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def fake_wheel(out_dir: Path) -> Path:
    """Stands in for launcher_ship.build_wheel."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / "rayctl-0.0.0-py3-none-any.whl"
    wheel.write_bytes(b"not a wheel: the hosts' pip is stubbed")
    return wheel


def install_python_shim(folder: Path) -> Path:
    """`folder/python3` = PYTHON_SHIM; put `folder` first on a host's PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "python3"
    shim.write_text(PYTHON_SHIM)
    shim.chmod(0o755)
    return folder

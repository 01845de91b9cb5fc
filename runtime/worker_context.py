"""The core worker of a worker process (set at start), so the API works inside tasks and actors."""

from __future__ import annotations

from typing import Any

_current: Any = None


def set_current(cw: Any) -> None:
    global _current
    _current = cw


def current() -> Any:
    return _current

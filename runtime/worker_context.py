"""The core worker of a worker process (set at start), so the API works inside tasks and actors;
and the worker itself (what runs the calls: is_canceled() reads it)."""

from __future__ import annotations

from typing import Any

_current: Any = None
_worker: Any = None


def set_current(cw: Any, worker: Any = None) -> None:
    global _current, _worker
    _current, _worker = cw, worker


def current_worker() -> Any:
    return _worker


def current() -> Any:
    return _current

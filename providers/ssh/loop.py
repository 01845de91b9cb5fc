"""The private asyncio loop the asyncssh runner's coroutines run on: one daemon thread per
process, started on first use, so the runner's API stays synchronous and callable from any
thread (the monitor updates several nodes at once) without touching the caller's own loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _start() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    threading.Thread(target=serve, name="rayctl-ssh-loop", daemon=True).start()
    ready.wait()
    return loop


def ssh_loop() -> asyncio.AbstractEventLoop:
    """The shared loop, started on first call."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = _start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
    """Run `coro` on the SSH loop and wait for its result (its exceptions are re-raised).
    Called from the loop thread itself it would deadlock, so that is refused."""
    loop = ssh_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("run_sync called from the SSH loop thread; await the coroutine instead")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout_s)
    except BaseException:
        future.cancel()
        raise

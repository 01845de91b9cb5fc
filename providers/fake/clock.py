"""Clocks: the real one and `FakeClock`, a virtual clock that tests (and the autoscaler's
virtual-time scenarios) move forward by hand."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Anything that returns unix seconds when called."""

    def __call__(self) -> float: ...


def system_clock() -> float:
    return time.time()


class FakeClock:
    """Virtual time: `clock()` reads it, `advance(s)` moves it; nothing ever waits.

    `sleep(s)` advances instead of blocking, so code that sleeps between polls runs instantly.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def time(self) -> float:
        return self()

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"time only moves forward; got advance({seconds})")
        with self._lock:
            self._now += seconds
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

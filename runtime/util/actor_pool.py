"""A fixed set of actors fed work in turn, as `ray.util.ActorPool`: `map` / `map_unordered` over
values, or `submit` and `get_next` / `get_next_unordered` by hand. Each call is
`fn(actor, value)` returning an ObjectRef (e.g. `lambda a, v: a.work.remote(v)`); a value waits
until an actor is free, so at most one call per actor is in flight."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from runtime.object_ref import ObjectRef

Call = Callable[[Any, Any], ObjectRef]


class ActorPool:
    def __init__(self, actors: Iterable[Any]) -> None:
        self._idle: list[Any] = list(actors)
        self._busy: dict[ObjectRef, tuple[int, Any]] = {}  # in flight -> (submit index, actor)
        self._by_index: dict[int, ObjectRef] = {}
        self._queued: deque[tuple[Call, Any]] = deque()  # submitted while every actor was busy
        self._given_up: dict[ObjectRef, Any] = {}  # timed out and ignored -> its actor
        self._next_submit = 0

    # -- submitting --------------------------------------------------------------------------
    def submit(self, fn: Call, value: Any) -> None:
        """Run `fn(actor, value)` on an idle actor, or once one is free."""
        if self._idle:
            self._start(fn, value, self._idle.pop())
        else:
            self._queued.append((fn, value))

    def map(self, fn: Call, values: Iterable[Any]) -> Iterator[Any]:
        """Results in the order of `values`."""
        self._require_drained("map")
        for value in values:
            self.submit(fn, value)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn: Call, values: Iterable[Any]) -> Iterator[Any]:
        """Results as they finish."""
        self._require_drained("map_unordered")
        for value in values:
            self.submit(fn, value)
        while self.has_next():
            yield self.get_next_unordered()

    # -- collecting --------------------------------------------------------------------------
    def has_next(self) -> bool:
        return bool(self._busy) or bool(self._queued)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order. With `timeout`: TimeoutError if it is not ready
        by then; with `ignore_if_timedout` too, that result is skipped from then on (its actor
        comes back to the pool when the call ends)."""
        from runtime import api

        left = self._check_next(timeout)
        ref = self._by_index[min(self._by_index)]  # the oldest still owed
        ready, _ = api.wait([ref], timeout=left)
        if not ready:
            if ignore_if_timedout:
                index, actor = self._busy.pop(ref)
                del self._by_index[index]
                self._given_up[ref] = actor
            raise TimeoutError(f"timed out waiting for a result of the pool after {timeout}s")
        return self._collect(ref)

    def get_next_unordered(self, timeout: float | None = None) -> Any:
        """Whichever result finishes first; TimeoutError if none does within `timeout`."""
        from runtime import api

        left = self._check_next(timeout)
        ready, _ = api.wait(list(self._busy), num_returns=1, timeout=left)
        if not ready:
            raise TimeoutError(f"timed out waiting for a result of the pool after {timeout}s")
        return self._collect(ready[0])

    # -- actors ------------------------------------------------------------------------------
    def has_free(self) -> bool:
        self._reclaim()
        return bool(self._idle) and not self._queued

    def pop_idle(self) -> Any | None:
        """Take an idle actor out of the pool (None if all are busy)."""
        return self._idle.pop() if self.has_free() else None

    def push(self, actor: Any) -> None:
        """Add an actor (it takes queued work at once)."""
        mine = [*self._idle, *(a for _, a in self._busy.values()), *self._given_up.values()]
        if any(actor is a for a in mine):
            raise ValueError("this actor is in the pool already")
        self._release(actor)

    # -- internals ---------------------------------------------------------------------------
    def _start(self, fn: Call, value: Any, actor: Any) -> None:
        try:
            ref = fn(actor, value)
            if not isinstance(ref, ObjectRef):
                raise TypeError("the pool's function must return an ObjectRef (call .remote()), "
                                f"got {type(ref).__name__}")
        except BaseException:
            self._idle.append(actor)  # the actor stays in the pool
            raise
        self._busy[ref] = (self._next_submit, actor)
        self._by_index[self._next_submit] = ref
        self._next_submit += 1

    def _check_next(self, timeout: float | None) -> float | None:
        """Make sure a result is owed and running; returns what is left of `timeout`."""
        from runtime import api

        self._reclaim()
        if not self.has_next():
            raise StopIteration("no more results to get")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._busy:  # queued work waits for an actor whose ignored call still runs
            if not self._given_up:
                raise ValueError("the pool has no actors to run the submitted work: push() one")
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not api.wait(list(self._given_up), num_returns=1, timeout=left)[0]:
                raise TimeoutError(f"timed out waiting for a free actor of the pool after {timeout}s")
            self._reclaim()
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def _collect(self, ref: ObjectRef) -> Any:
        from runtime import api

        index, actor = self._busy.pop(ref)
        del self._by_index[index]
        self._release(actor)
        return api.get(ref)

    def _reclaim(self) -> None:
        """Actors whose ignored calls have ended come back."""
        from runtime import api

        if self._given_up:
            done, _ = api.wait(list(self._given_up), num_returns=len(self._given_up), timeout=0)
            for ref in done:
                self._release(self._given_up.pop(ref))

    def _release(self, actor: Any) -> None:
        if self._queued:
            fn, value = self._queued.popleft()
            self._start(fn, value, actor)
        else:
            self._idle.append(actor)

    def _require_drained(self, what: str) -> None:
        if self.has_next():
            raise RuntimeError(f"{what}() on a pool with results not yet collected: get them first")

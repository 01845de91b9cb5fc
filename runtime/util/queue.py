"""A first-in first-out queue shared by tasks, actors and drivers, as `ray.util.queue.Queue`: its
items live in one async actor, and the `Queue` object (which can be passed to tasks) calls it.
`put` / `get` block (optionally up to a timeout, then `Full` / `Empty`, the `queue` module's
exceptions); the `_nowait` forms and the batch forms never block."""

from __future__ import annotations

import asyncio
from queue import Empty, Full
from typing import Any

__all__ = ["Empty", "Full", "Queue"]


class _QueueActor:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.items: asyncio.Queue[Any] = asyncio.Queue(maxsize)

    async def put(self, item: Any, timeout: float | None) -> None:
        try:
            if timeout == 0:  # (wait_for with 0 gives up before even trying)
                self.items.put_nowait(item)
            else:
                await asyncio.wait_for(self.items.put(item), timeout)
        except (TimeoutError, asyncio.QueueFull):
            raise Full(f"the queue stayed full (maxsize {self.maxsize}) for {timeout}s") from None

    async def get(self, timeout: float | None) -> Any:
        try:
            if timeout == 0:
                return self.items.get_nowait()
            return await asyncio.wait_for(self.items.get(), timeout)
        except (TimeoutError, asyncio.QueueEmpty):
            raise Empty(f"the queue stayed empty for {timeout}s") from None

    async def put_nowait_batch(self, items: list[Any]) -> None:
        if self.maxsize > 0 and self.items.qsize() + len(items) > self.maxsize:
            raise Full(f"{len(items)} items do not fit: {self.items.qsize()} of "
                       f"{self.maxsize} are taken")
        for item in items:
            self.items.put_nowait(item)

    async def get_nowait_batch(self, count: int) -> list[Any]:
        if count > self.items.qsize():
            raise Empty(f"{count} items asked for, {self.items.qsize()} in the queue")
        return [self.items.get_nowait() for _ in range(count)]

    async def qsize(self) -> int:
        return self.items.qsize()


class Queue:
    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        """`maxsize` <= 0: unbounded. `actor_options` go to the actor (e.g. `num_cpus`, `name`)."""
        from runtime import api

        if not isinstance(maxsize, int) or isinstance(maxsize, bool):
            raise TypeError(f"maxsize must be an int, got {maxsize!r}")
        self.maxsize = maxsize
        options = {"num_cpus": 0, **(actor_options or {})}
        self.actor = api.remote(_QueueActor).options(**options).remote(maxsize)

    def __len__(self) -> int:
        return self.qsize()

    def qsize(self) -> int:
        return int(self._call("qsize"))

    size = qsize

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        return self.maxsize > 0 and self.qsize() >= self.maxsize

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add `item`, waiting for room (up to `timeout` s, then `Full`); `block=False`: at once."""
        self._check_timeout(timeout)
        self._call("put", item, timeout if block else 0)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """The oldest item, waiting for one (up to `timeout` s, then `Empty`)."""
        self._check_timeout(timeout)
        return self._call("get", timeout if block else 0)

    def put_nowait(self, item: Any) -> None:
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def put_nowait_batch(self, items: list[Any]) -> None:
        """All of `items`, or none of them (`Full`)."""
        self._call("put_nowait_batch", list(items))

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        """Exactly `num_items` items, or none (`Empty`)."""
        return list(self._call("get_nowait_batch", num_items))

    def shutdown(self) -> None:
        """Kill the queue's actor; its items are gone."""
        from runtime import api

        if self.actor is not None:
            api.kill(self.actor)
            self.actor = None

    def _call(self, method: str, *args: Any) -> Any:
        from runtime import api

        if self.actor is None:
            raise RuntimeError("the queue was shut down")
        try:
            return api.get(getattr(self.actor, method).remote(*args))
        except Empty as exc:  # re-raised as the plain queue exception, as Ray's
            raise Empty(str(getattr(exc, "cause", exc))) from None
        except Full as exc:
            raise Full(str(getattr(exc, "cause", exc))) from None

    @staticmethod
    def _check_timeout(timeout: float | None) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be a number >= 0, got {timeout}")

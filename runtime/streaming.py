"""Generator tasks, as Ray's `num_returns="streaming"`: the task yields values; each one becomes
an object as soon as it is yielded (the worker sends it to the owner on the task's connection,
ahead of the task's reply), and the caller's `ObjectRefGenerator` hands out their refs in order
while the task still runs. An exception in the generator becomes the next ref's error, as in
Ray. Such tasks are not retried (a retry would yield everything again)."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from runtime.object_ref import ObjectRef

if TYPE_CHECKING:
    from runtime.core_worker import CoreWorker


class Stream:
    """What the owner knows of one generator task's output (shared by the I/O thread, which
    adds items, and the user thread that iterates)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: list[ObjectRef | None] = []  # None once handed out
        self.done = False


class ObjectRefGenerator:
    """Iterate for the refs of a generator task's values, in order, as they are yielded."""

    def __init__(self, task_id: str, stream: Stream) -> None:
        self.task_id = task_id
        self._stream = stream
        self._next = 0

    def __iter__(self) -> ObjectRefGenerator:
        return self

    def __next__(self) -> ObjectRef:
        return self._take(None)

    def __aiter__(self) -> ObjectRefGenerator:
        return self

    async def __anext__(self) -> ObjectRef:
        """`async for ref in gen` (the wait runs in a thread: the event loop goes on)."""
        ref = await asyncio.to_thread(self._take_or_none)
        if ref is None:
            raise StopAsyncIteration
        return ref

    def _take_or_none(self) -> ObjectRef | None:
        try:
            return self._take(None)
        except StopIteration:  # (cannot cross a future: asyncio refuses StopIteration)
            return None

    def has_next_ready(self) -> bool:
        """Whether the next ref can be taken now, or the stream ended (what wait() asks)."""
        stream = self._stream
        with stream.cond:
            return len(stream.items) > self._next or stream.done

    def next(self, timeout: float | None = None) -> ObjectRef:
        """The next ref, waiting up to `timeout` s for the task to yield it (TimeoutError)."""
        return self._take(timeout)

    def _take(self, timeout: float | None) -> ObjectRef:
        stream = self._stream
        with stream.cond:
            ready = stream.cond.wait_for(lambda: len(stream.items) > self._next or stream.done,
                                         timeout)
            if not ready:
                raise TimeoutError(f"generator task {self.task_id} yielded nothing for {timeout}s")
            if len(stream.items) <= self._next:
                raise StopIteration
            ref = stream.items[self._next]
            stream.items[self._next] = None  # the caller holds it now (and may drop it)
            self._next += 1
        assert ref is not None
        return ref

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self.task_id})"


def on_item(cw: CoreWorker, stream: Stream, item: tuple[Any, ...]) -> None:
    """A value the task yielded (I/O thread): an owned object, ready."""
    object_id, inline, location, size, contains = item
    ref = cw.new_owned_ref(object_id)
    cw.refs.complete(object_id, inline=inline, location=location, size=size, contains=contains)
    with stream.cond:
        stream.items.append(ref)
        stream.cond.notify_all()


def on_end(cw: CoreWorker, task_id: str, stream: Stream, error: BaseException | None) -> None:
    """The task ended (I/O thread); an error is handed out as one more ref that raises it."""
    if error is not None:
        ref = cw.new_owned_ref(cw.fresh_object_id())
        cw.refs.complete(ref.id, error=error)
    with stream.cond:
        if error is not None:
            stream.items.append(ref)
        stream.done = True
        stream.cond.notify_all()

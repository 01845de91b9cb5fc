"""`multiprocessing.Pool` over the cluster, as `ray.util.multiprocessing.Pool`: `processes`
actors each run chunks of calls, so code written for a local Pool spreads over every node.
`map` / `starmap` / `imap` / `imap_unordered` / `apply` / `apply_async` / `map_async`, and
`close` / `terminate` / `join` / `with Pool() as p:` as the standard library's."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from runtime.util.actor_pool import ActorPool

__all__ = ["AsyncResult", "Pool"]

Call = tuple[tuple[Any, ...], dict[str, Any]]  # (args, kwargs) of one call


class _PoolWorker:
    def run(self, fn: Callable[..., Any], calls: list[Call]) -> list[Any]:
        return [fn(*args, **kwargs) for args, kwargs in calls]


class AsyncResult:
    """What `apply_async` / `map_async` return: `get(timeout)`, `wait`, `ready`, `successful`."""

    def __init__(self, refs: list[Any], single: bool) -> None:
        self._refs = refs
        self._single = single

    def get(self, timeout: float | None = None) -> Any:
        from runtime import api
        from runtime.exceptions import GetTimeoutError

        try:
            chunks = api.get(self._refs, timeout=timeout)
        except GetTimeoutError:
            raise TimeoutError(f"the result was not ready within {timeout}s") from None
        values = [v for chunk in chunks for v in chunk]
        return values[0] if self._single else values

    def wait(self, timeout: float | None = None) -> None:
        from runtime import api

        api.wait(self._refs, num_returns=len(self._refs), timeout=timeout)

    def ready(self) -> bool:
        from runtime import api

        return len(api.wait(self._refs, num_returns=len(self._refs), timeout=0)[0]) == len(self._refs)

    def successful(self) -> bool:
        """Whether it finished without raising (ValueError while it runs, as the stdlib's)."""
        if not self.ready():
            raise ValueError("the result is not ready yet")
        try:
            self.get(timeout=0)
        except Exception:  # noqa: BLE001 - any error raised by the call
            return False
        return True


class Pool:
    def __init__(self, processes: int | None = None, initializer: Callable[..., Any] | None = None,
                 initargs: tuple[Any, ...] = (), ray_remote_args: dict[str, Any] | None = None) -> None:
        """`processes`: how many actors (default: the cluster's CPUs). `initializer(*initargs)`
        runs once in each. `ray_remote_args` go to the actors (e.g. `num_cpus`)."""
        from runtime import api

        count = processes if processes is not None else max(1, int(api.cluster_resources().get("CPU", 1)))
        if count < 1:
            raise ValueError(f"processes must be at least 1, got {count}")
        options = {"num_cpus": 1, **(ray_remote_args or {})}
        actor_class = api.remote(_PoolWorker).options(**options)
        self._actors = [actor_class.remote() for _ in range(count)]
        if initializer is not None:
            api.get([a.run.remote(initializer, [(initargs, {})]) for a in self._actors])
        self._pool = ActorPool(self._actors)
        self._turns = itertools.cycle(range(count))  # apply_async goes round the actors
        self._open = True

    # -- blocking forms ------------------------------------------------------------------------
    def apply(self, fn: Callable[..., Any], args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None) -> Any:
        return self.apply_async(fn, args, kwds).get()

    def map(self, fn: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int | None = None) -> list[Any]:
        return list(self.imap(fn, iterable, chunksize))

    def starmap(self, fn: Callable[..., Any], iterable: Iterable[tuple[Any, ...]],
                chunksize: int | None = None) -> list[Any]:
        calls: list[Call] = [(tuple(args), {}) for args in iterable]
        return [v for chunk in self._chunks_in_order(fn, calls, chunksize) for v in chunk]

    # -- lazy and asynchronous forms -----------------------------------------------------------
    def imap(self, fn: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int | None = 1) -> Iterator[Any]:
        calls: list[Call] = [((value,), {}) for value in iterable]
        for chunk in self._chunks_in_order(fn, calls, chunksize):
            yield from chunk

    def imap_unordered(self, fn: Callable[[Any], Any], iterable: Iterable[Any],
                       chunksize: int | None = 1) -> Iterator[Any]:
        self._check_open()
        calls: list[Call] = [((value,), {}) for value in iterable]
        chunks = _split(calls, self._chunksize(chunksize, len(calls)))
        for chunk in self._pool.map_unordered(lambda a, c: a.run.remote(fn, c), chunks):
            yield from chunk

    def apply_async(self, fn: Callable[..., Any], args: tuple[Any, ...] = (),
                    kwds: dict[str, Any] | None = None) -> AsyncResult:
        self._check_open()
        actor = self._actors[next(self._turns)]
        return AsyncResult([actor.run.remote(fn, [(tuple(args), dict(kwds or {}))])], single=True)

    def map_async(self, fn: Callable[[Any], Any], iterable: Iterable[Any],
                  chunksize: int | None = None) -> AsyncResult:
        self._check_open()
        calls: list[Call] = [((value,), {}) for value in iterable]
        chunks = _split(calls, self._chunksize(chunksize, len(calls)))
        refs = [self._actors[i % len(self._actors)].run.remote(fn, chunk) for i, chunk in enumerate(chunks)]
        return AsyncResult(refs, single=False)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """No more work is accepted; what was submitted finishes."""
        self._open = False

    def terminate(self) -> None:
        """Stop the actors now (work in progress is lost)."""
        from runtime import api

        self._open = False
        for actor in self._actors:
            api.kill(actor)
        self._actors = []

    def join(self) -> None:
        """After close(): wait for submitted work, then stop the actors."""
        from runtime import api

        if self._open:
            raise ValueError("join() needs close() or terminate() first")
        for actor in self._actors:
            api.wait([actor.run.remote(_noop, [])])  # queued behind everything sent to it
        self.terminate()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    # -- internals -----------------------------------------------------------------------------
    def _chunks_in_order(self, fn: Callable[..., Any], calls: list[Call],
                         chunksize: int | None) -> Iterator[list[Any]]:
        self._check_open()
        chunks = _split(calls, self._chunksize(chunksize, len(calls)))
        return self._pool.map(lambda a, c: a.run.remote(fn, c), chunks)

    def _chunksize(self, chunksize: int | None, total: int) -> int:
        if chunksize is None:  # as the stdlib: about four chunks per process
            chunksize, extra = divmod(total, len(self._actors) * 4)
            chunksize += bool(extra)
        if chunksize < 1:
            return 1
        return chunksize

    def _check_open(self) -> None:
        if not self._open:
            raise ValueError("the pool is closed")


def _split(calls: list[Call], size: int) -> list[list[Call]]:
    return [calls[i:i + size] for i in range(0, len(calls), size)]


def _noop() -> None:
    return None

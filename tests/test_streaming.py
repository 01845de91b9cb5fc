"""Generator tasks (`num_returns="streaming"`, as Ray's): the caller gets each yielded value's
ref while the task still runs, in order; an exception in the generator is the next ref's error;
a worker that dies mid-stream ends it with that error (no retry: it would yield everything
again); refs the caller never takes are freed with the generator."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from polling import wait_for


def test_values_arrive_in_order_while_the_task_still_runs(cluster, tmp_path) -> None:
    rt = cluster
    gate = tmp_path / "go-on"

    @rt.remote(num_returns="streaming")
    def produce(n, gate):
        import os
        import time

        for i in range(n):
            yield i * 10
            if i == 1:  # hold on until the caller has seen the first two
                while not os.path.exists(gate):
                    time.sleep(0.01)

    stream = produce.remote(4, str(gate))
    assert [rt.get(stream.next(timeout=20)) for _ in range(2)] == [0, 10]
    with pytest.raises(TimeoutError):
        stream.next(timeout=0.2)  # the task is still held: nothing more yet
    gate.write_text("go")
    assert [rt.get(ref) for ref in stream] == [20, 30]
    with pytest.raises(StopIteration):
        next(stream)

    @rt.remote(num_returns="streaming")
    def arrays():
        for i in range(3):
            yield np.full(300_000, i)  # 2.4 MB each: through the object store

    assert [int(rt.get(ref).sum()) for ref in arrays.remote()] == [0, 300_000, 600_000]


def test_an_exception_is_the_next_refs_error_and_a_crash_ends_the_stream(cluster) -> None:
    rt = cluster

    @rt.remote(num_returns="streaming")
    def fails():
        yield "fine"
        raise ValueError("broke after one")

    refs = list(fails.remote())
    assert len(refs) == 2 and rt.get(refs[0]) == "fine"
    with pytest.raises(ValueError, match="broke after one"):
        rt.get(refs[1])

    @rt.remote(num_returns="streaming")
    def dies():
        import os

        yield "before"
        os._exit(1)

    refs = list(dies.remote())
    assert rt.get(refs[0]) == "before"
    with pytest.raises(rt.exceptions.WorkerCrashedError):
        rt.get(refs[1])


def test_refs_never_taken_are_freed_with_the_generator(cluster) -> None:
    rt = cluster
    from runtime.api import _core

    @rt.remote(num_returns="streaming")
    def many():
        yield from range(50)

    owned_before = len(_core().refs.owned)
    stream = many.remote()
    first = rt.get(next(stream))
    wait_for(lambda: len(_core().refs.owned) >= owned_before + 49, 20,
             "the other 49 values yielded")  # (the first was taken and dropped)
    del stream
    gc.collect()
    assert first == 0
    wait_for(lambda: len(_core().refs.owned) == owned_before, 10, "the untaken refs freed")


def test_dynamic_is_refused_naming_streaming(cluster) -> None:
    rt = cluster
    with pytest.raises(ValueError, match='use num_returns="streaming"'):
        rt.remote(num_returns="dynamic")(lambda: 1)
    with pytest.raises(ValueError, match='use num_returns="streaming"'):
        rt.method(num_returns="dynamic")

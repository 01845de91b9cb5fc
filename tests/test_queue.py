"""runtime.util.queue.Queue, as Ray's: items pass between a driver and tasks in order; a
blocking get waits for a producer; timeouts raise queue.Empty / queue.Full; the batch forms are
all or nothing; a shut-down queue says so."""

from __future__ import annotations

import pytest


def test_items_pass_from_tasks_to_the_driver_in_order(cluster) -> None:
    rt = cluster
    from runtime.util.queue import Queue

    q = Queue()

    @rt.remote
    def produce(queue, n):
        for i in range(n):
            queue.put(i)
        return "done"

    done = produce.remote(q, 5)
    assert [q.get(timeout=30) for _ in range(5)] == [0, 1, 2, 3, 4]  # waits for the producer
    assert rt.get(done) == "done" and q.empty() and len(q) == 0
    q.shutdown()


def test_timeouts_and_the_nowait_forms(cluster) -> None:
    from queue import Empty, Full

    from runtime.util.queue import Queue

    q = Queue(maxsize=2)
    with pytest.raises(Empty, match="stayed empty"):
        q.get(timeout=0.05)
    with pytest.raises(Empty):
        q.get_nowait()
    q.put("a")
    q.put_nowait("b")
    assert q.full() and q.qsize() == 2
    with pytest.raises(Full, match="maxsize 2"):
        q.put("c", timeout=0.05)
    with pytest.raises(Full):
        q.put_nowait("c")
    assert q.get() == "a" and q.get_nowait() == "b"
    with pytest.raises(ValueError, match="timeout"):
        q.get(timeout=-1)
    q.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        q.get()


def test_batches_are_all_or_nothing(cluster) -> None:
    from queue import Empty, Full

    from runtime.util.queue import Queue

    q = Queue(maxsize=3)
    q.put_nowait_batch([1, 2])
    with pytest.raises(Full, match="do not fit"):
        q.put_nowait_batch([3, 4])
    assert q.qsize() == 2  # nothing of the refused batch went in
    with pytest.raises(Empty):
        q.get_nowait_batch(3)
    assert q.get_nowait_batch(2) == [1, 2]
    q.shutdown()

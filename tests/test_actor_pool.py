"""runtime.util.ActorPool, as Ray's: work spread over a fixed set of actors, one call per actor
at a time, results in submission order (map, get_next) or as they finish (map_unordered,
get_next_unordered), timeouts, and actors taken out and put back."""

from __future__ import annotations

import pytest
from polling import wait_for


@pytest.fixture(scope="module")
def workers(cluster):
    rt = cluster

    @rt.remote(num_cpus=0)
    class Worker:
        def __init__(self, name):
            self.name = name

        def work(self, value):
            import time

            seconds, result = value
            time.sleep(seconds)
            return self.name, result

    return [Worker.remote("a"), Worker.remote("b")]


def test_map_keeps_order_and_map_unordered_yields_the_fastest_first(cluster, workers) -> None:
    from runtime.util import ActorPool

    pool = ActorPool(workers)
    values = [(0.3, 0), (0.0, 1), (0.0, 2), (0.0, 3)]
    out = list(pool.map(lambda a, v: a.work.remote(v), values))
    assert [r for _, r in out] == [0, 1, 2, 3]
    assert {name for name, _ in out} == {"a", "b"}  # both actors took work
    unordered = [r for _, r in pool.map_unordered(lambda a, v: a.work.remote(v), values)]
    assert sorted(unordered) == [0, 1, 2, 3] and unordered[0] != 0  # 0 sleeps, others do not


def test_one_call_per_actor_extra_work_waits_in_the_pool(cluster, workers) -> None:
    from runtime.util import ActorPool

    pool = ActorPool(workers)
    for i in range(5):
        pool.submit(lambda a, v: a.work.remote(v), (0.05, i))
    assert not pool.has_free()
    got = [pool.get_next() for _ in range(5)]
    assert [r for _, r in got] == [0, 1, 2, 3, 4]
    assert not pool.has_next() and pool.has_free()
    with pytest.raises(StopIteration):
        pool.get_next()


def test_timeouts_and_giving_up_on_a_result(cluster, workers) -> None:
    from runtime.util import ActorPool

    pool = ActorPool(workers)
    pool.submit(lambda a, v: a.work.remote(v), (1.0, "slow"))
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.05)
    assert pool.has_next()  # still owed: not given up
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.05, ignore_if_timedout=True)
    assert not pool.has_next()  # skipped
    wait_for(pool.has_free, 10, "the actor of the ignored call back in the pool")
    assert len([pool.pop_idle(), pool.pop_idle()]) == 2 and pool.pop_idle() is None


def test_actors_taken_out_and_put_back(cluster, workers) -> None:
    from runtime.util import ActorPool

    pool = ActorPool(workers[:1])
    actor = pool.pop_idle()
    assert actor is not None and pool.pop_idle() is None
    pool.submit(lambda a, v: a.work.remote(v), (0.0, "queued"))
    with pytest.raises(ValueError, match="no actors"):
        pool.get_next()
    pool.push(actor)  # takes the queued work at once
    assert pool.get_next() == ("a", "queued")
    with pytest.raises(ValueError, match="in the pool already"):
        pool.push(actor)
    with pytest.raises(TypeError, match="must return an ObjectRef"):
        pool.submit(lambda a, v: v, 1)
    assert pool.pop_idle() is actor  # a bad call does not lose the actor

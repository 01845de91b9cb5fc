"""The Redis lifecycle store: records round-trip, compare-and-set refuses stale writers (also
across two store objects, as two monitors would be), offering marks expire."""

from __future__ import annotations

import threading

import pytest
from autoscaler_redis import RedisServer, new_cluster_id, redis_server_fixture  # noqa: F401

from autoscaler.lifecycle import InstanceStatus, StaleRecord, new_instance, transition
from autoscaler.lifecycle_store import OfferingMark, RedisLifecycleStore

S = InstanceStatus


def store(server: RedisServer, cluster_id: str) -> RedisLifecycleStore:
    return RedisLifecycleStore(server.client(), cluster_id)


def test_put_get_all_round_trip(redis_server: RedisServer) -> None:
    s = store(redis_server, new_cluster_id())
    rec = new_instance("i-1", "cpu", 100.0, "min_workers", launch_config_hash="abc")
    s.put(rec)
    moved = transition(rec, S.REQUESTED, 101.0, "launch sent", request_id="i-1")
    s.put(moved, expected=S.QUEUED)
    assert s.get("i-1") == moved
    assert s.all() == [moved]
    assert s.get("missing") is None


def test_new_record_must_be_new(redis_server: RedisServer) -> None:
    s = store(redis_server, new_cluster_id())
    rec = new_instance("i-1", "cpu", 100.0, "x")
    s.put(rec)
    with pytest.raises(StaleRecord, match="expected status <absent>, found QUEUED"):
        s.put(rec)


def test_stale_writer_is_refused_across_monitors(redis_server: RedisServer) -> None:
    cluster = new_cluster_id()
    first, second = store(redis_server, cluster), store(redis_server, cluster)
    rec = new_instance("i-1", "cpu", 100.0, "x")
    first.put(rec)
    second.put(transition(rec, S.REQUESTED, 101.0, "second sent it"), expected=S.QUEUED)
    with pytest.raises(StaleRecord, match="expected status QUEUED, found REQUESTED"):
        first.put(transition(rec, S.TERMINATED, 101.0, "first cancels"), expected=S.QUEUED)
    assert first.get("i-1").status == S.REQUESTED  # type: ignore[union-attr]


def test_concurrent_writers_exactly_one_wins(redis_server: RedisServer) -> None:
    cluster = new_cluster_id()
    rec = new_instance("i-1", "cpu", 100.0, "x")
    store(redis_server, cluster).put(rec)
    wins: list[int] = []
    barrier = threading.Barrier(8)

    def attempt(n: int) -> None:
        s = store(redis_server, cluster)
        barrier.wait()
        try:
            s.put(transition(rec, S.REQUESTED, 101.0, f"writer {n}"), expected=S.QUEUED)
            wins.append(n)
        except StaleRecord:
            pass

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store(redis_server, cluster).get("i-1").history[-1].reason == f"writer {wins[0]}"  # type: ignore[union-attr]


def test_delete_and_offering_marks_expire(redis_server: RedisServer) -> None:
    s = store(redis_server, new_cluster_id())
    s.put(new_instance("i-1", "cpu", 100.0, "x"))
    s.delete(["i-1"])
    assert s.get("i-1") is None
    s.put(new_instance("i-1", "cpu", 100.0, "the id is free again"))
    s.mark_unavailable(OfferingMark("m5/us-a/on-demand", "cpu", until=200.0, reason="ICE"))
    s.mark_unavailable(OfferingMark("type:gpu", "gpu", until=500.0, reason="quota"))
    assert [m.key for m in s.unavailable(now=150.0)] == ["m5/us-a/on-demand", "type:gpu"]
    assert [m.key for m in s.unavailable(now=250.0)] == ["type:gpu"]
    assert [m.key for m in s.unavailable(now=150.0)] == ["type:gpu"]  # expired mark removed


def test_decisions_are_capped_newest_first(redis_server: RedisServer) -> None:
    s = store(redis_server, new_cluster_id())
    s.add_decisions([{"n": i} for i in range(250)])
    got = s.decisions(limit=1000)
    assert len(got) == 200
    assert got[0] == {"n": 249}

"""The lifecycle stores: the whole protocol on both (records round-trip, compare-and-set, offering
marks that expire, decisions capped newest first); on Redis also stale writers refused across two
store objects (as two monitors would be), concurrent writers, and records an older version wrote."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from autoscaler_redis import RedisServer, new_cluster_id, redis_server_fixture  # noqa: F401

from autoscaler.decisions import Decision, DecisionAction, FailureCause
from autoscaler.lifecycle import InstanceStatus, StaleRecord, new_instance, transition
from autoscaler.lifecycle_store import (
    InMemoryLifecycleStore,
    LifecycleStore,
    OfferingMark,
    RedisLifecycleStore,
    autoscaler_prefix,
)
from autoscaler.model import LaunchCause
from providers.base import Market, Offering

S = InstanceStatus


def store(server: RedisServer, cluster_id: str) -> RedisLifecycleStore:
    return RedisLifecycleStore(server.client(), cluster_id)


@pytest.fixture(params=["memory", "redis"])
def any_store(request: pytest.FixtureRequest) -> Callable[[], LifecycleStore]:
    """A factory of empty stores of one kind (the Redis server only for the Redis kind)."""
    if request.param == "memory":
        return InMemoryLifecycleStore
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda: store(server, new_cluster_id())


def test_put_get_all_round_trip(any_store: Callable[[], LifecycleStore]) -> None:
    s = any_store()
    rec = new_instance("i-1", "cpu", 100.0, "min_workers", launch_config_hash="abc",
                       request_id="r-1", gang="g-1")
    s.put(rec)
    moved = transition(rec, S.REQUESTED, 101.0, "launch sent")
    s.put(moved, expected=S.QUEUED)
    assert s.get("i-1") == moved
    assert s.all() == [moved]
    assert s.get("missing") is None


def test_new_record_must_be_new(any_store: Callable[[], LifecycleStore]) -> None:
    s = any_store()
    rec = new_instance("i-1", "cpu", 100.0, "x")
    s.put(rec)
    with pytest.raises(StaleRecord, match="expected status <absent>, found QUEUED"):
        s.put(rec)


def test_delete_and_offering_marks_expire(any_store: Callable[[], LifecycleStore]) -> None:
    s = any_store()
    s.put(new_instance("i-1", "cpu", 100.0, "x"))
    s.delete(["i-1"])
    assert s.get("i-1") is None
    s.put(new_instance("i-1", "cpu", 100.0, "the id is free again"))
    spot = Offering("m5.large", "us-a", Market.SPOT)
    s.mark_unavailable(OfferingMark("cpu", spot, until=200.0, reason="ICE"))
    s.mark_unavailable(OfferingMark("gpu", None, until=500.0, reason="quota"))
    assert s.unavailable(now=150.0) == [
        OfferingMark("cpu", spot, 200.0, "ICE"),
        OfferingMark("gpu", None, 500.0, "quota"),  # the whole type, typed: no key to parse
    ]
    assert [m.node_type for m in s.unavailable(now=250.0)] == ["gpu"]
    assert [m.node_type for m in s.unavailable(now=150.0)] == ["gpu"]  # expired mark removed
    s.mark_unavailable(OfferingMark("gpu", None, until=900.0, reason="quota again"))
    assert [(m.until, m.reason) for m in s.unavailable(now=150.0)] == [(900.0, "quota again")]


def test_decisions_are_capped_newest_first(any_store: Callable[[], LifecycleStore]) -> None:
    s = any_store()
    s.add_decisions([
        Decision(float(i), DecisionAction.LAUNCH, LaunchCause.QUEUED_DEMAND, f"i-{i}", "cpu", "")
        for i in range(250)
    ])
    got = s.decisions(limit=1000)
    assert len(got) == 200
    assert got[0].target == "i-249" and got[0].cause is LaunchCause.QUEUED_DEMAND
    assert [d.target for d in s.decisions(limit=2)] == ["i-249", "i-248"]


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


def test_state_an_older_version_wrote_is_migrated(redis_server: RedisServer) -> None:
    """A record stored as RUNNING (and its CAS status as "RUNNING") reads as RAYLET_RUNNING, and
    a transition from it passes the compare-and-set; old decisions read with today's actions."""
    cluster = new_cluster_id()
    client, prefix = redis_server.client(), autoscaler_prefix(cluster)
    old = ('{"instance_id":"i-1","node_type":"cpu","request_id":"i-1","cloud_instance_id":"f-1",'
           '"history":[["QUEUED",1,"x"],["REQUESTED",2,"x"],["ALLOCATED",3,"x"],'
           '["INSTALLING",4,"x"],["RUNNING",5,"registered"]]}')
    client.hset(prefix + "instances", "i-1", old)
    client.hset(prefix + "status", "i-1", "RUNNING")
    client.lpush(prefix + "decisions", '{"at": 9, "action": "launch_failed", "target": "i-0", '
                                       '"node_type": "cpu", "reason": "no capacity"}')
    client.hset(prefix + "unavailable", "type:cpu",
                '{"node_type": "cpu", "until": 1e12, "reason": "quota"}')
    s = store(redis_server, cluster)
    rec = s.get("i-1")
    assert rec is not None and rec.status is S.RAYLET_RUNNING
    with pytest.raises(StaleRecord, match="expected status QUEUED, found RAYLET_RUNNING"):
        s.put(rec, expected=S.QUEUED)
    draining = transition(rec, S.RAYLET_DRAINING, 10.0, "idle")
    s.put(draining, expected=S.RAYLET_RUNNING)  # the CAS takes "RUNNING" for RAYLET_RUNNING
    assert client.hget(prefix + "status", "i-1") == b"RAYLET_DRAINING"
    assert s.get("i-1") == draining
    (decision,) = s.decisions()
    assert (decision.action, decision.cause) == (DecisionAction.ALLOCATION_FAILED, None)
    assert s.unavailable(now=0.0) == []  # an old-format mark is dropped (it lives minutes)
    assert client.hgetall(prefix + "unavailable") == {}
    new = Decision(11.0, DecisionAction.ALLOCATION_FAILED, FailureCause.NO_CAPACITY, "i-2", "cpu",
                   "no capacity")
    s.add_decisions([new])
    assert s.decisions(limit=1) == [new]

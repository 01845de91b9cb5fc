"""Killing a node mid-workload: the GCS notices, retryable tasks finish elsewhere, actors restart
elsewhere, lost objects are rebuilt from lineage (or named in ObjectLostError); draining."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from polling import wait_for


@pytest.fixture()
def cluster() -> Iterator[object]:
    from runtime.cluster_utils import Cluster

    cluster = Cluster(head_node_args={"num_cpus": 1}, death_timeout_s=1.5)
    try:
        cluster.connect()
        yield cluster
    finally:
        cluster.shutdown()


def _alive(rt) -> set[str]:
    return {n["NodeID"] for n in rt.nodes() if n["Alive"]}


def test_killed_node_is_detected_and_its_tasks_are_retried(cluster) -> None:
    import runtime as rt

    victim = cluster.add_node(num_cpus=2, resources={"victim": 2})
    wait_for(lambda: victim.node_id in _alive(rt), 10, "the new node")

    @rt.remote(max_retries=3)
    def slow(i):
        time.sleep(1.0)
        return i

    refs = [slow.remote(i) for i in range(3)]
    wait_for(lambda: rt.available_resources().get("CPU", 0) < 1, 10, "tasks running on both nodes")
    start = time.monotonic()
    cluster.remove_node(victim, allow_graceful=False)
    wait_for(lambda: victim.node_id not in _alive(rt), 10, "the GCS to declare the node dead")
    assert time.monotonic() - start < 5
    cluster.add_node(num_cpus=2)
    assert rt.get(refs, timeout=60) == [0, 1, 2]
    dead = next(n for n in rt.nodes() if n["NodeID"] == victim.node_id)
    assert dead["State"] == "DEAD" and "heartbeat" in dead["DeathReason"]


def test_actor_restarts_on_another_node(cluster) -> None:
    import runtime as rt
    from runtime.util import NodeAffinitySchedulingStrategy

    victim = cluster.add_node(num_cpus=1)
    wait_for(lambda: victim.node_id in _alive(rt), 10, "the new node")

    @rt.remote(max_restarts=1, max_task_retries=2)
    class Where:
        def node(self):
            return rt.get_runtime_context().get_node_id()

    a = Where.options(num_cpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(victim.node_id, soft=True)).remote()
    first = rt.get(a.node.remote(), timeout=20)
    cluster.remove_node(victim, allow_graceful=False)
    second = rt.get(a.node.remote(), timeout=30)
    assert first != second and second in _alive(rt)


def test_lost_object_is_rebuilt_from_lineage_or_named(cluster) -> None:
    import runtime as rt
    from runtime.exceptions import ObjectLostError
    from runtime.util import NodeAffinitySchedulingStrategy

    victim = cluster.add_node(num_cpus=1)
    wait_for(lambda: victim.node_id in _alive(rt), 10, "the new node")
    there = NodeAffinitySchedulingStrategy(victim.node_id, soft=True)

    @rt.remote(max_retries=2, num_returns=2)
    def make():
        return np.full(1_000_000, 7, dtype=np.int64), rt.get_runtime_context().get_node_id()

    @rt.remote(max_retries=0)
    def make_once():
        return np.full(1_000_000, 3, dtype=np.int64)

    rebuilt, made_on = make.options(scheduling_strategy=there).remote()
    lost = make_once.options(scheduling_strategy=there).remote()
    rt.wait([rebuilt, lost], num_returns=2, timeout=20)
    assert rt.get(made_on) == victim.node_id  # (the arrays themselves are never fetched here before)
    cluster.remove_node(victim, allow_graceful=False)
    wait_for(lambda: victim.node_id not in _alive(rt), 10, "the node to be declared dead")
    array = rt.get(rebuilt, timeout=30)
    assert int(array.sum()) == 7_000_000 and rt.get(made_on) != victim.node_id
    with pytest.raises(ObjectLostError, match=lost.hex()):
        rt.get(lost, timeout=30)


def test_drain_answers_at_once_lets_running_work_finish_and_refuses_to_drop_objects(cluster, tmp_path) -> None:
    import runtime as rt
    from runtime.api import _core
    from runtime.protocol import gcs_pb2
    from runtime.util import NodeAffinitySchedulingStrategy

    node = cluster.add_node(num_cpus=1)
    wait_for(lambda: node.node_id in _alive(rt), 10, "the new node")
    there = NodeAffinitySchedulingStrategy(node.node_id)
    started, release = tmp_path / "started", tmp_path / "release"

    @rt.remote
    def busy(started: str, release: str) -> str:
        import os

        open(started, "w").close()
        while not os.path.exists(release):
            time.sleep(0.01)
        return "finished"

    @rt.remote
    def big():
        return np.zeros(1_000_000)

    kept = big.options(scheduling_strategy=there).remote()
    rt.wait([kept])
    cw = _core()
    refused = cw.gcs_call("DrainNode", gcs_pb2.DrainNodeRequest(node_id=node.node_id, deadline_s=5))
    assert not refused.accepted and "primary copy" in refused.reason
    del kept
    wait_for(lambda: _store_used(rt, node.node_id) == 0, 10, "the freed object to leave the node's store")
    running = busy.options(scheduling_strategy=there).remote(str(started), str(release))
    wait_for(started.exists, 10, "the task to start")
    asked = time.monotonic()
    reply = cw.gcs_call("DrainNode", gcs_pb2.DrainNodeRequest(node_id=node.node_id, reason="test"))
    assert reply.accepted, reply.reason
    assert time.monotonic() - asked < 1.0, "DrainNode waited for the drain"
    row = next(n for n in rt.nodes() if n["NodeID"] == node.node_id)
    assert row["State"] == "DRAINING" and not _drain(cw, node.node_id).drained
    release.write_text("go")
    assert rt.get(running, timeout=30) == "finished"
    wait_for(lambda: _drain(cw, node.node_id).drained, 10, "the node to report drained")
    assert next(n for n in rt.nodes() if n["NodeID"] == node.node_id)["State"] == "DRAINING"


def _drain(cw, node_id: str):
    return next(n for n in cw.nodes() if n.node_id == node_id).drain


def _store_used(rt, node_id: str) -> int:

    from runtime.api import _core
    from runtime.protocol import raylet_pb2, raylet_pb2_grpc

    info = next(n for n in rt.nodes() if n["NodeID"] == node_id)
    from runtime.grpc_auth import open_channel

    with open_channel(f"{info['NodeManagerAddress']}:{info['NodeManagerPort']}", _core().token) as channel:
        stats = raylet_pb2_grpc.RayletStub(channel).GetNodeStats(
            raylet_pb2.RayletEmpty(), timeout=5)
    return int(stats.object_store_used)


def test_a_node_that_loses_the_head_stops_itself(cluster) -> None:
    """Nothing billed without a head: a worker node that cannot reach the GCS for its timeout
    stops its raylet (and so its workers), instead of idling forever."""
    import signal

    import psutil

    import runtime as rt
    from runtime.session import session_processes

    orphan = cluster.add_node(num_cpus=1, gcs_lost_timeout_s=2)
    wait_for(lambda: orphan.node_id in _alive(rt), 10, "the new node")
    rt.shutdown()
    raylet = orphan.procs[-1]
    gcs = next(p for p in session_processes(cluster.head.session_dir) if "runtime.gcs.server" in " ".join(p.cmdline()))
    gcs.send_signal(signal.SIGKILL)
    start = time.monotonic()
    raylet.wait(15)
    assert 1.5 < time.monotonic() - start < 12
    assert not psutil.pid_exists(raylet.pid) or psutil.Process(raylet.pid).status() == psutil.STATUS_ZOMBIE

"""The drain protocol end to end (real GCS, raylets and workers), through the autoscaler's own
client and node reader: DrainNode answers at once, a draining node takes no new work, its row
names what still holds it, and says drained once nothing does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from runtime.cluster_utils import Cluster

    cluster = Cluster(head_node_args={"num_cpus": 1})
    try:
        cluster.connect()
        yield cluster
    finally:
        cluster.shutdown()


def new_node(cluster: Any, num_cpus: float = 2) -> Any:
    import runtime as rt

    node = cluster.add_node(num_cpus=num_cpus)
    wait_for(lambda: any(n["NodeID"] == node.node_id and n["Alive"] for n in rt.nodes()), 10,
             "the new node")
    return node


def drainer(cluster: Any) -> Any:
    from autoscaler.drain import GcsDrainer

    return GcsDrainer(cluster.address, cluster.token)


def gcs_node(cluster: Any, node_id: str) -> Any:
    """The node as the autoscaler's monitor reads it (GetNodes -> observe.GcsNode)."""
    from autoscaler.monitor import gcs_nodes

    return next(n for n in gcs_nodes(cluster.address, cluster.token)() if n.node_id == node_id)


@pytest.fixture()
def gate(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(started, release) files for a task that runs until released; released at the end."""
    started, release = tmp_path / "started", tmp_path / "release"
    try:
        yield started, release
    finally:
        release.write_text("go")


def hold(rt: Any) -> Any:
    @rt.remote(max_retries=0)
    def held(started: str, release: str) -> str:
        open(started, "w").close()
        while not os.path.exists(release):
            time.sleep(0.01)
        return rt.get_runtime_context().get_node_id()

    return held


def test_a_busy_node_drains_in_the_background_naming_what_holds_it(cluster, gate) -> None:
    import runtime as rt
    from runtime.protocol.states import NodeState
    from runtime.util import NodeAffinitySchedulingStrategy

    node = new_node(cluster)
    started, release = gate
    there = NodeAffinitySchedulingStrategy(node.node_id, soft=True)
    running = hold(rt).options(scheduling_strategy=there).remote(str(started), str(release))

    @rt.remote(num_cpus=1)
    class Where:
        def node(self) -> str:
            return rt.get_runtime_context().get_node_id()

    actor = Where.options(scheduling_strategy=there).remote()
    assert rt.get(actor.node.remote(), timeout=20) == node.node_id
    wait_for(started.exists, 10, "the task to start")

    asked = time.monotonic()
    answer = drainer(cluster).request_drain(node.node_id, reason="outdated", idle_only=False)
    assert answer.accepted, answer.reason
    assert time.monotonic() - asked < 0.5, "DrainNode waited for the drain"

    seen = wait_for(lambda: (n := gcs_node(cluster, node.node_id)).drain and n, 5, "the drain row")
    assert seen.state == NodeState.DRAINING and seen.drain.reason == "outdated"
    assert not seen.drain.drained and seen.drain.holders() == "1 running task, 1 actor"

    # no new work: a task and an actor that prefer the node run elsewhere
    later = hold(rt).options(scheduling_strategy=there, num_cpus=0).remote(str(started), str(release))
    other = Where.options(scheduling_strategy=there, num_cpus=0).remote()
    assert rt.get(other.node.remote(), timeout=20) != node.node_id

    release.write_text("go")
    assert rt.get(running, timeout=20) == node.node_id
    assert rt.get(later, timeout=20) != node.node_id
    wait_for(lambda: gcs_node(cluster, node.node_id).drain.holders() == "1 actor", 5,
             "the finished task to stop holding the node")
    assert not gcs_node(cluster, node.node_id).drain.drained
    rt.kill(actor)
    wait_for(lambda: gcs_node(cluster, node.node_id).drain.drained, 10, "the node to report drained")
    assert gcs_node(cluster, node.node_id).state == NodeState.DRAINING  # kept until terminated


def test_an_idle_only_drain_of_a_busy_node_is_rejected(cluster, gate) -> None:
    import runtime as rt
    from runtime.protocol.states import NodeState
    from runtime.util import NodeAffinitySchedulingStrategy

    node = new_node(cluster)
    started, release = gate
    there = NodeAffinitySchedulingStrategy(node.node_id)
    running = hold(rt).options(scheduling_strategy=there).remote(str(started), str(release))
    wait_for(started.exists, 10, "the task to start")

    answer = drainer(cluster).request_drain(node.node_id, reason="idle for 300 s", idle_only=True)
    assert not answer.accepted
    assert f"node {node.node_id} is busy (1 running task)" in answer.reason
    assert gcs_node(cluster, node.node_id).state == NodeState.ALIVE
    released = time.time()
    release.write_text("go")
    assert rt.get(running, timeout=20) == node.node_id

    wait_for(lambda: gcs_node(cluster, node.node_id).idle_since >= released, 5, "the node to be idle")
    assert drainer(cluster).request_drain(node.node_id, reason="idle", idle_only=True).accepted


def test_a_node_holding_objects_in_use_is_rejected_unless_forced(cluster) -> None:
    import numpy as np

    import runtime as rt
    from runtime.api import _core
    from runtime.protocol import gcs_pb2
    from runtime.util import NodeAffinitySchedulingStrategy

    node = new_node(cluster, num_cpus=1)

    @rt.remote
    def big() -> Any:
        return np.zeros(1_000_000)

    kept = big.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id)).remote()
    rt.wait([kept])
    answer = drainer(cluster).request_drain(node.node_id, reason="outdated", idle_only=False)
    assert not answer.accepted
    assert "holds the primary copy of 1 object(s) still referenced" in answer.reason
    assert "force=True" in answer.reason

    forced = _core().gcs_call("DrainNode", gcs_pb2.DrainNodeRequest(
        node_id=node.node_id, reason="replaced", force=True))
    assert forced.accepted, forced.reason
    drain = wait_for(lambda: gcs_node(cluster, node.node_id).drain, 5, "the drain row")
    assert drain.objects == 1
    wait_for(lambda: gcs_node(cluster, node.node_id).drain.drained, 5, "a forced drain to be over")
    assert int(rt.get(kept).sum()) == 0  # still readable while the node lives


def test_objects_whose_owner_is_gone_do_not_hold_a_drain(cluster) -> None:
    """A finished job's results nobody can free any more must not keep a node forever."""
    node = new_node(cluster, num_cpus=1)
    driver = textwrap.dedent(f"""
        import numpy as np
        import runtime as rt
        from runtime.util import NodeAffinitySchedulingStrategy

        rt.init(address={cluster.address!r}, _token={cluster.token!r})
        there = NodeAffinitySchedulingStrategy({node.node_id!r})
        ref = rt.remote(lambda: np.ones(1_000_000)).options(scheduling_strategy=there).remote()
        rt.wait([ref])
        print("made", flush=True)
        import os
        os._exit(0)  # gone without freeing anything
    """)
    done = subprocess.run([sys.executable, "-c", driver], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "made", done.stderr
    answer = drainer(cluster).request_drain(node.node_id, reason="idle", idle_only=True)
    assert answer.accepted, answer.reason
    wait_for(lambda: gcs_node(cluster, node.node_id).drain.drained, 5, "the node to report drained")

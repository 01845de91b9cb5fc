"""Placement groups across a GCS restart and over many creations: a group created before the GCS
died still holds its bundles and runs its tasks after; bundles a node holds for a group no table
names (a GCS that died mid-placement) are given back; removed groups are not kept forever; asking
after a group the cluster does not know fails at once instead of waiting."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from gcs_process import kill_gcs, start_gcs_again
from polling import wait_for


@pytest.fixture(scope="module")
def cluster2() -> Iterator[Any]:
    from runtime.cluster_utils import Cluster

    cluster = Cluster(head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=2, resources={"far": 1})
        cluster.connect()
        yield cluster
    finally:
        cluster.shutdown()


def _pg_api() -> Any:
    return importlib.import_module("runtime.util.placement_group")


def _far_node(cluster: Any) -> Any:
    from runtime.api import _core
    from runtime.protocol.common_pb2 import NodeInfo

    return next(n for n in _core().nodes() if "far" in n.total and n.state == NodeInfo.ALIVE)


def _bundle_call(cluster: Any, node: Any, method: str, payload: Any = None) -> Any:
    """What the GCS asks of a raylet, asked directly over the node's authenticated transport."""
    from runtime.transport import connect

    async def call() -> Any:
        conn = await connect(f"{node.address}:{node.local_port}", cluster.token)
        try:
            return await asyncio.wait_for(conn.request(method, payload), 5)
        finally:
            conn.close()

    return asyncio.run(call())


def _free_cpu(node_id: str) -> float:
    from runtime.api import _core

    node = next(n for n in _core().nodes() if n.node_id == node_id)
    return node.available.get("CPU", 0.0)


def _state(pg: Any) -> str | None:
    """The group's state as the GCS tells it; None while the GCS is not answering."""
    import grpc

    try:
        return _pg_api().placement_group_table(pg)["state"]
    except grpc.RpcError:
        return None


def test_gcs_restart_keeps_groups_and_gives_back_bundles_no_group_owns(cluster2) -> None:
    import runtime as rt

    pgs = _pg_api()
    far = _far_node(cluster2)
    pg = pgs.placement_group([{"CPU": 1, "far": 1}])
    assert rt.get(pg.ready(), timeout=20) is not None
    # What a GCS that died between a node's reservation and its own write leaves behind:
    orphan = {"pg_id": "0rphan00", "bundles": [(0, {"CPU": 1.0})], "commit": True}
    assert _bundle_call(cluster2, far, "prepare_bundles", orphan) == ""
    assert set(_bundle_call(cluster2, far, "list_bundles")) == {pg.id, "0rphan00"}
    wait_for(lambda: _free_cpu(far.node_id) == 0.0, 5, "both CPUs of the node reserved")

    start_gcs_again(cluster2.temp_dir, *kill_gcs(cluster2.temp_dir))

    wait_for(lambda: _bundle_call(cluster2, far, "list_bundles") == [pg.id], 20,
             "the restarted GCS to take back the bundle no group owns")
    wait_for(lambda: _free_cpu(far.node_id) == 1.0, 10, "the orphan's CPU free again")
    assert pgs.placement_group_table(pg)["state"] == "CREATED"
    every = pgs.placement_group_table()  # no argument: all of them, by id (as Ray's)
    assert every[pg.id]["bundles_to_node_id"] == {0: far.node_id} and "0rphan00" not in every

    @rt.remote(num_cpus=1)
    def where() -> str:
        return rt.get_runtime_context().get_node_id()

    inside = rt.util.PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)
    assert rt.get(where.options(scheduling_strategy=inside).remote(), timeout=20) == far.node_id
    pgs.remove_placement_group(pg)
    wait_for(lambda: _free_cpu(far.node_id) == 2.0, 10, "the group's CPU back after removal")


def test_removed_groups_are_forgotten_beyond_the_last_thousand(cluster2) -> None:
    import runtime as rt
    from runtime.gcs.placement_groups import MAX_REMOVED_KEPT

    pgs = _pg_api()
    made = []
    for _ in range(MAX_REMOVED_KEPT + MAX_REMOVED_KEPT // 10 + 10):
        pg = pgs.placement_group([{"CPU": 0.01}])
        rt.get(pg.ready(), timeout=20)
        pgs.remove_placement_group(pg)
        made.append(pg)
    wait_for(lambda: pgs.placement_group_table(made[-1])["state"] == "REMOVED", 10, "the last removal")
    with pytest.raises(ValueError, match="unknown to the cluster"):
        pgs.PlacementGroup(made[0].id, [{"CPU": 0.01}]).wait(5)
    with pytest.raises(ValueError, match="was removed before it was ready"):
        pgs.PlacementGroup(made[-1].id, [{"CPU": 0.01}]).wait(5)

    start_gcs_again(cluster2.temp_dir, *kill_gcs(cluster2.temp_dir))  # Redis forgot them too
    wait_for(lambda: _state(made[-1]) == "REMOVED", 20, "the GCS back")
    assert pgs.placement_group_table(made[0])["state"] == ""
    wait_for(lambda: rt.available_resources().get("CPU") == 3.0, 10, "every CPU free")


def test_waiting_on_a_group_the_cluster_does_not_know_fails_at_once(cluster2) -> None:
    pgs = _pg_api()
    with pytest.raises(ValueError, match="unknown to the cluster"):
        pgs.PlacementGroup("feedf00d", [{"CPU": 1}]).wait(30)


def test_a_waiting_group_gets_the_resources_a_removed_group_gives_back(cluster2) -> None:
    import runtime as rt

    pgs = _pg_api()
    first = pgs.placement_group([{"CPU": 2}])
    assert rt.get(first.ready(), timeout=20) is not None
    second = pgs.placement_group([{"CPU": 2}])
    assert not second.wait(0.5) and _state(second) == "PENDING"
    pgs.remove_placement_group(first)
    assert second.wait(10)
    assert pgs.placement_group_table(second)["bundles_to_node_id"][0] == _far_node(cluster2).node_id
    pgs.remove_placement_group(second)

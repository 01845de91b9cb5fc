"""The autoscaler's batches on GCP (the unmodified google-cloud-compute client against the fake
Compute server): 50 nodes of one type are one bulkInsert; a zone that has room for only part of a
batch grants that part and the rest is launched elsewhere on the next round; a gang is one
all-or-nothing bulkInsert that fails over whole to the next zone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
from gcp_fake import FakeCompute

from autoscaler.decisions import DecisionAction, FailureCause
from autoscaler.executor import Executor
from autoscaler.installer import InstallResult
from autoscaler.lifecycle import InstanceStatus
from autoscaler.lifecycle_store import InMemoryLifecycleStore
from autoscaler.model import LaunchAction, LaunchCause, NodeTypeSpec, Plan, ScalingConfig
from autoscaler.observe import GcsView, Observation
from autoscaler.reconciler import Reconciler
from providers.base import Instance, NodeProvider
from providers.gcp import GCPProvider

ZONE_A, ZONE_B = "us-central1-a", "us-central1-b"
WORKER = "cpu.worker"
S = InstanceStatus
# a record that got its VM (a running VM goes straight on to its install)
HAS_VM = {S.ALLOCATED, S.RAYLET_INSTALLING}


class NoInstall:
    def install(self, instance: Instance) -> InstallResult:
        return InstallResult(True)


class Harness:
    """A monitor's reconciler on an in-memory store against one cloud, round by round."""

    def __init__(self, fake: FakeCompute) -> None:
        config = {"type": "gcp", "project_id": "proj", "region": "us-central1",
                  "availability_zone": f"{ZONE_A},{ZONE_B}", "ssh_cidr": "203.0.113.0/24"}
        types = {WORKER: {"node_config": {"machineType": "n1-standard-8"}}}
        self.fake = fake
        self.cloud = cast(NodeProvider, GCPProvider("batch", config, types, **fake.client_args()))
        self.store = InMemoryLifecycleStore()
        self.executor = Executor(self.cloud, NoInstall())
        scaling = ScalingConfig.of([NodeTypeSpec(WORKER, {"CPU": 8}, max_workers=100)],
                                   max_workers=100)
        self.reconciler = Reconciler(self.store, self.cloud, self.executor, scaling, time.time)

    def round(self, plan: Plan) -> None:
        obs = Observation(GcsView(), tuple(self.cloud.list_instances()), tuple(self.store.all()))
        self.reconciler.sync(obs)
        self.reconciler.step(plan, obs)
        self.executor.wait_idle(60)
        self.store.add_decisions(self.reconciler.take_decisions())

    def bulk_inserts(self) -> list[dict[str, Any]]:
        return self.fake.state.bodies("POST", "/bulkInsert")

    def zones(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for instance in self.cloud.list_instances():
            counts[instance.offering.zone] = counts.get(instance.offering.zone, 0) + 1
        return counts


def launch(count: int, gang: str = "") -> Plan:
    cause = LaunchCause.PLACEMENT_GROUP if gang else LaunchCause.QUEUED_DEMAND
    return Plan(launches=(LaunchAction(WORKER, count, "test demand", cause, gang),))


@pytest.fixture
def harness() -> Iterator[Harness]:
    with FakeCompute() as fake:
        h = Harness(fake)
        try:
            yield h
        finally:
            h.executor.shutdown()


def test_fifty_nodes_are_one_bulk_insert(harness: Harness) -> None:
    harness.round(launch(50))
    (bulk,) = harness.bulk_inserts()
    assert (bulk["count"], bulk["minCount"]) == ("50", "1")  # the cloud may grant part
    records = harness.store.all()
    assert {r.status for r in records} <= HAS_VM
    assert len({r.cloud_instance_id for r in records}) == 50
    assert harness.zones() == {ZONE_A: 50}


def test_a_short_zone_grants_part_and_the_rest_launches_elsewhere(harness: Harness) -> None:
    harness.fake.state.knobs.zone_capacity[ZONE_A] = 30
    harness.round(launch(50))
    assert harness.zones() == {ZONE_A: 30}
    statuses = [r.status for r in harness.store.all()]
    assert (sum(s in HAS_VM for s in statuses), statuses.count(S.ALLOCATION_FAILED)) == (30, 20)
    failed = [d for d in harness.store.decisions(100)
              if d.action is DecisionAction.ALLOCATION_FAILED]
    assert len(failed) == 20 and {d.cause for d in failed} == {FailureCause.PARTIAL_GRANT}
    # the planner asks again for the twenty; zone A is remembered as short
    harness.round(launch(20))
    assert harness.zones() == {ZONE_A: 30, ZONE_B: 20}
    assert [b["count"] for b in harness.bulk_inserts()] == ["50", "20"]
    statuses = [r.status for r in harness.store.all()]
    assert (sum(s in HAS_VM for s in statuses), statuses.count(S.TERMINATED)) == (50, 20)


def test_a_gang_is_all_or_nothing_and_fails_over_whole(harness: Harness) -> None:
    harness.fake.state.knobs.zone_capacity[ZONE_A] = 2
    harness.round(launch(3, gang="pg-1"))
    assert [(b["count"], b["minCount"]) for b in harness.bulk_inserts()] == [("3", "3")] * 2
    assert harness.zones() == {ZONE_B: 3}  # nothing left half-made in zone A
    assert {r.status for r in harness.store.all()} <= HAS_VM

"""Launches as the provider contract allows them: same-type nodes in one call under one request id,
granted in part when the cloud gives fewer (the rest stays demand), placement groups as gangs
(all or nothing; across types launched type by type and rolled back), and a monitor killed in
the middle of a batch leaves no duplicate and no leak (real Redis store)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from autoscaler_redis import RedisServer, redis_server_fixture  # noqa: F401
from autoscaler_scenario import Scenario, cluster_config

from autoscaler.decisions import DecisionAction, FailureCause
from autoscaler.lifecycle import InstanceStatus
from autoscaler.model import LaunchCause, TerminationCause
from providers.base import Instance
from providers.fake import FakeProvider

S = InstanceStatus
A = DecisionAction


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[Scenario] = []

    def build(raw: dict[str, Any] | None = None, **kwargs: Any) -> Scenario:
        made.append(Scenario(raw or cluster_config(), tmp_path, **kwargs))
        return made[-1]

    yield build
    for scenario in made:
        scenario.close()


def with_types(**types: dict[str, Any]) -> dict[str, Any]:
    raw = cluster_config(max_workers=100)
    raw["available_node_types"].update(types)
    return raw


def test_fifty_nodes_of_one_type_are_one_provider_call(make: Any) -> None:
    raw = cluster_config(max_workers=100)
    raw["available_node_types"]["cpu"].update(min_workers=50, max_workers=60)
    s = make(raw)
    s.round()
    (call,) = s.provider.calls_of("launch")
    assert (call["count"], call["all_or_nothing"]) == (50, False)
    records = s.records()
    assert len(records) == 50 and {r.request_id for r in records} == {call["request_id"]}
    assert len({r.cloud_instance_id for r in records}) == 50  # one instance each, none shared
    assert Counter(r.status for r in records) == {S.RAYLET_INSTALLING: 50}
    assert len(s.live("cpu")) == 50


def test_a_partial_grant_keeps_what_came_and_the_rest_stays_demand(make: Any) -> None:
    s = make(cluster_config(max_workers=20))
    s.provider.capacity["cpu"] = 3
    s.queue({"CPU": 1}, 5)
    s.round()
    assert [c["count"] for c in s.provider.calls_of("launch")] == [5]
    assert Counter(r.status for r in s.records()) == {
        S.RAYLET_INSTALLING: 3,
        S.ALLOCATION_FAILED: 2,
    }
    s.boot_raylets()
    s.round()  # the two are given up; the planner still sees two tasks without a node
    assert s.statuses() == {"RAYLET_RUNNING": 3, "TERMINATED": 2}
    failed = s.decisions(A.ALLOCATION_FAILED)  # stored by the round after the launch job's
    assert [d.cause for d in failed] == [FailureCause.PARTIAL_GRANT] * 2
    assert all("the cloud granted 3 of 5" in d.reason for d in failed)
    notes = s.monitor.last_plan.notes
    assert any("queued: 2 x {CPU: 1} waits: cpu unavailable" in n for n in notes)
    s.provider.capacity["cpu"] = 10  # capacity comes back; the mark expires
    s.clock.advance(301)
    s.settle()
    assert [c["count"] for c in s.provider.calls_of("launch")] == [5, 2]
    assert s.statuses() == {"RAYLET_RUNNING": 5, "TERMINATED": 2}


def test_a_gang_that_cannot_be_granted_whole_launches_nothing(make: Any) -> None:
    s = make(cluster_config(max_workers=20))
    s.provider.capacity["cpu"] = 2
    assert s.memory is not None
    s.memory.add_group("pg-1", "STRICT_SPREAD", [{"CPU": 1}] * 3)
    s.round()
    (call,) = s.provider.calls_of("launch")
    assert (call["count"], call["all_or_nothing"]) == (3, True)
    assert s.live() == []  # two were available: a group needs all three or none
    assert s.statuses() == {"ALLOCATION_FAILED": 3}
    s.round()
    assert {d.cause for d in s.decisions(A.ALLOCATION_FAILED)} == {FailureCause.NO_CAPACITY}
    assert {d.cause for d in s.decisions(A.LAUNCH)} == {LaunchCause.PLACEMENT_GROUP}


def test_a_gang_across_types_launches_type_by_type(make: Any) -> None:
    s = make(with_types(gpu={"resources": {"CPU": 1, "GPU": 1}, "max_workers": 5}))
    assert s.memory is not None
    s.memory.add_group("pg-1", "STRICT_SPREAD", [{"CPU": 1}, {"CPU": 1}, {"GPU": 1}])
    s.round()
    launches = s.provider.calls_of("launch")
    calls = [(c["node_type"], c["count"], c["all_or_nothing"]) for c in launches]
    assert calls == [("cpu", 2, True), ("gpu", 1, True)]
    assert Counter(r.status for r in s.records()) == {S.RAYLET_INSTALLING: 3}
    assert len({r.gang for r in s.records()}) == 1  # one gang, two batches
    assert len({r.request_id for r in s.records()}) == 2


def test_a_gang_across_types_rolls_back_when_a_later_type_fails(make: Any) -> None:
    s = make(with_types(gpu={"resources": {"CPU": 1, "GPU": 1}, "max_workers": 5}))
    s.provider.capacity["gpu"] = 0
    assert s.memory is not None
    s.memory.add_group("pg-1", "STRICT_SPREAD", [{"CPU": 1}, {"CPU": 1}, {"GPU": 1}])
    s.round()
    assert [c["node_type"] for c in s.provider.calls_of("launch")] == ["cpu", "gpu"]
    (rollback,) = s.provider.calls_of("terminate")
    cpu = [r for r in s.records() if r.node_type == "cpu"]
    assert sorted(rollback["instance_ids"]) == sorted(r.cloud_instance_id for r in cpu)
    assert s.live() == []
    for rec in cpu:  # each rolled-back instance was known to its record all along: no leak
        assert [c.status for c in rec.history] == [S.QUEUED, S.REQUESTED, S.ALLOCATED,
                                                   S.TERMINATING]
    (gpu,) = [r for r in s.records() if r.node_type == "gpu"]
    assert gpu.status is S.ALLOCATION_FAILED
    s.round()
    assert s.statuses() == {"TERMINATED": 3}
    rolled = s.decisions(A.TERMINATE)
    assert [d.cause for d in rolled] == [TerminationCause.GANG_ROLLBACK] * 2
    assert len(s.provider.calls_of("terminate")) == 1  # the rollback's call was the only one


class BlockingCloud(FakeProvider):
    """The first launch call blocks until released — after creating its instances, or before —
    and then "dies" with its monitor: its answer never reaches anyone."""

    block_after_create = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.entered = threading.Event()
        self.first = True

    def launch(self, *args: Any, **kwargs: Any) -> list[Instance]:
        if not self.first:
            return super().launch(*args, **kwargs)
        self.first = False
        if self.block_after_create:
            super().launch(*args, **kwargs)
        self.entered.set()
        assert self.release.wait(30), "never released"
        raise RuntimeError("the monitor that made this call was killed")


@pytest.mark.parametrize("after_create", [True, False], ids=["after-create", "before-create"])
def test_a_monitor_killed_mid_batch_leaves_no_duplicate_and_no_leak(
    redis_server: RedisServer, tmp_path: Path, after_create: bool
) -> None:
    s = Scenario(cluster_config(max_workers=20), tmp_path, redis_server=redis_server,
                 provider_class=BlockingCloud, leak_grace_s=60)
    cloud = s.provider
    assert isinstance(cloud, BlockingCloud)
    cloud.block_after_create = after_create
    first = s.monitor
    try:
        s.queue({"CPU": 1}, 4)
        first.run_once()  # the batch's call blocks in the first monitor's pool
        assert cloud.entered.wait(10)
        assert s.statuses() == {"REQUESTED": 4}
        assert len(cloud.list_instances()) == (4 if after_create else 0)

        s.monitor = s.new_monitor()  # a new process on the same Redis; the old one is gone
        s.settle()
        s.clock.advance(61)  # past the leak grace
        s.settle(2)

        instances = cloud.list_instances()
        assert len(instances) == 4  # exactly N, whether the first call made them or the resend
        owners = Counter(r.cloud_instance_id for r in s.records())
        assert owners == {i.id: 1 for i in instances}  # each owned by exactly one record
        assert s.statuses() == {"RAYLET_RUNNING": 4}
        assert cloud.calls_of("terminate") == []  # and none was taken for a leak
        request_ids = {c["request_id"] for c in cloud.calls_of("launch")}
        assert request_ids == {s.records()[0].request_id}
    finally:
        cloud.release.set()  # the old call ends as its process would have: no answer
        first.executor.wait_idle(10)
        s.close()


def test_instances_pair_with_records_the_same_way_every_time() -> None:
    from autoscaler.lifecycle import new_instance, transition
    from autoscaler.provisioner import match
    from providers.base import Offering, ProviderState

    def requested(iid: str) -> Any:
        return transition(new_instance(iid, "cpu", 0.0, "x", request_id="r-1"), S.REQUESTED, 1.0,
                          "sent")

    def vm(cloud_id: str) -> Instance:
        return Instance(cloud_id, "cpu", Offering("cpu"), ProviderState.RUNNING)

    holder = transition(requested("i-a"), S.ALLOCATED, 2.0, "listed", cloud_instance_id="vm-2")
    records = [requested("i-c"), holder, requested("i-b")]
    instances = [vm("vm-3"), vm("vm-2"), vm("vm-1")]
    pairs, left = match(records, instances)
    assert [(r.instance_id, i.id) for r, i in pairs] == [("i-b", "vm-1"), ("i-c", "vm-3")]
    assert left == []  # vm-2 stays with its holder: never two records on one instance
    again, _ = match(list(reversed(records)), list(reversed(instances)))
    assert [(r.instance_id, i.id) for r, i in again] == [("i-b", "vm-1"), ("i-c", "vm-3")]
    short, left = match(records, [vm("vm-2"), vm("vm-9")])
    assert [(r.instance_id, i.id) for r, i in short] == [("i-b", "vm-9")]
    assert [r.instance_id for r in left] == ["i-c"]  # no instance for it: it fails, stays demand

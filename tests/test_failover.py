"""The one offering-failover loop (autoscaler/failover.py), as the autoscaler and `rayctl up`'s
head launch use it: capacity errors move on to the next offering, any other error stops, a gang
launches type by type and rolls back what it made when a later type fails."""

from __future__ import annotations

from typing import Any, cast

import pytest

from autoscaler.config import validate_config
from autoscaler.failover import LaunchRequest, launch_gang, launch_with_failover
from autoscaler.launcher.head import LaunchError
from autoscaler.launcher.up import launch_head
from providers.base import NODE_KIND_HEAD, TAG_NODE_KIND, NodeProvider, QuotaError
from providers.fake import FakeProvider

TYPES: dict[str, Any] = {
    "head": {"node_config": {"instance_type": "h1", "zones": ["a", "b"]}},
    "cpu": {"node_config": {"instance_type": ["c1", "c2"]}},
    "gpu": {"node_config": {"instance_type": "g1"}},
}


def fake() -> FakeProvider:
    return FakeProvider("failover", {}, TYPES)


def request(provider: FakeProvider, node_type: str, count: int, *, gang: bool = False,
            request_id: str = "r-1") -> LaunchRequest:
    offerings = tuple(provider.offerings(node_type))
    return LaunchRequest(node_type, count, request_id, offerings, all_or_nothing=gang)


def test_capacity_moves_on_to_the_next_offering_under_the_same_request_id() -> None:
    cloud = fake()
    cloud.capacity["c1"] = 0
    outcome = launch_with_failover(cast(NodeProvider, cloud), request(cloud, "cpu", 3))
    assert outcome.complete and {i.offering.instance_type for i in outcome.instances} == {"c2"}
    assert [o.instance_type for o, _ in outcome.capacity_failures] == ["c1"]
    assert [(c["offering"].instance_type, c["request_id"]) for c in cloud.calls_of("launch")] == [
        ("c1", "r-1"), ("c2", "r-1")
    ]


def test_another_error_stops_at_once() -> None:
    cloud = fake()
    cloud.fail_next("launch", QuotaError("cpus"))
    outcome = launch_with_failover(cast(NodeProvider, cloud), request(cloud, "cpu", 2))
    assert outcome.instances == () and isinstance(outcome.error, QuotaError)
    assert outcome.failed_offering is not None and outcome.failed_offering.instance_type == "c1"
    assert len(cloud.calls_of("launch")) == 1  # c2 would meet the same quota
    assert outcome.why_short() == "quota exceeded: cpus"


def test_a_short_grant_is_kept_and_said() -> None:
    cloud = fake()
    cloud.capacity["c1"] = 2
    outcome = launch_with_failover(cast(NodeProvider, cloud), request(cloud, "cpu", 5))
    assert len(outcome.instances) == 2 and not outcome.complete
    assert outcome.granted_by is not None and outcome.granted_by.instance_type == "c1"
    assert outcome.why_short() == "the cloud granted 2 of 5"


def test_a_gang_rolls_back_earlier_types_when_a_later_one_fails() -> None:
    cloud = fake()
    cloud.capacity["g1"] = 0
    cpu = request(cloud, "cpu", 2, gang=True, request_id="r-cpu")
    gpu = request(cloud, "gpu", 1, gang=True, request_id="r-gpu")
    outcome = launch_gang(cast(NodeProvider, cloud), [cpu, gpu])
    assert outcome.failed and outcome.rollback_error is None
    assert [o.request.node_type for o in outcome.outcomes] == ["cpu", "gpu"]
    made = sorted(i.id for i in outcome.outcomes[0].instances)
    assert sorted(i.id for i in outcome.rolled_back) == made
    assert cloud.calls_of("terminate") == [{"instance_ids": made}]
    assert cloud.list_instances() == []


def test_a_gang_stops_before_later_types_when_an_early_one_fails() -> None:
    cloud = fake()
    cloud.capacity["c1"] = cloud.capacity["c2"] = 1
    cpu = request(cloud, "cpu", 2, gang=True, request_id="r-cpu")
    gpu = request(cloud, "gpu", 1, gang=True, request_id="r-gpu")
    outcome = launch_gang(cast(NodeProvider, cloud), [cpu, gpu])
    assert outcome.not_attempted == (gpu,) and outcome.rolled_back == ()
    assert [c["node_type"] for c in cloud.calls_of("launch")] == ["cpu", "cpu"]
    assert cloud.list_instances() == []  # all or nothing: one each was there, none taken


def config() -> Any:
    return validate_config({
        "cluster_name": "failover",
        "provider": {"type": "fake"},
        "head_node_type": "head",
        "available_node_types": {name: dict(entry) for name, entry in TYPES.items()},
    })


def test_the_head_launch_uses_the_same_loop() -> None:
    cloud = fake()
    cloud.capacity["h1/a/on-demand"] = 0
    head = launch_head(config(), cast(NodeProvider, cloud), "hash1234567890")
    assert head.offering.zone == "b" and head.tags[TAG_NODE_KIND] == NODE_KIND_HEAD
    again = launch_head(config(), cast(NodeProvider, cloud), "hash1234567890")
    assert again.id == head.id  # a retried `up` gets the same head back
    cloud.capacity["h1"] = 0
    with pytest.raises(LaunchError, match="cannot launch the head node: no capacity for h1/b"):
        launch_head(config(), cast(NodeProvider, cloud), "otherhash")
    cloud.fail_next("launch", QuotaError("instances"))
    with pytest.raises(LaunchError, match="cannot launch the head node: quota exceeded"):
        launch_head(config(), cast(NodeProvider, cloud), "thirdhash")


def test_each_capacity_failure_is_heard_before_the_next_offering_is_tried() -> None:
    # The monitor saves each mark from this hook: a crash between two offerings must not lose
    # the first one's outcome (a restarted monitor would try it again).
    cloud = fake()
    cloud.capacity["c1"] = 0
    heard: list[tuple[str, str, int]] = []

    def on_capacity(node_type: str, offering: Any, why: str) -> None:
        heard.append((node_type, offering.instance_type, len(cloud.calls_of("launch"))))

    outcome = launch_gang(cast(NodeProvider, cloud), [request(cloud, "cpu", 2)], on_capacity)
    assert outcome.outcomes[0].complete
    assert heard == [("cpu", "c1", 1)]  # heard after c1's call, before c2's

"""Listing, terminating and caching instances on AWS against moto."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_fakes import AMI, inject, provider_section, record_calls

from providers.aws import AWSProvider
from providers.base import TAG_CLUSTER, TAG_REQUEST_ID, ProviderState

MakeProvider = Callable[..., AWSProvider]


def _states(ec2: Any, ids: list[str]) -> dict[str, str]:
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}


def test_list_returns_only_this_clusters_live_instances(
    make_provider: MakeProvider, ec2: Any
) -> None:
    mine, other = make_provider(), make_provider(cluster="other")
    launched = mine.launch("cpu", mine.offerings("cpu")[0], 3, "req-1")
    other.launch("cpu", other.offerings("cpu")[0], 1, "req-1")
    ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, InstanceType="m5.large")
    stopped, terminated, running = (i.id for i in launched)
    ec2.stop_instances(InstanceIds=[stopped])
    ec2.terminate_instances(InstanceIds=[terminated])

    listed = {i.id: i for i in make_provider().list_instances()}  # a fresh provider: no memory

    assert set(listed) == {stopped, running}
    assert listed[stopped].state is ProviderState.STOPPED
    assert listed[running].state in (ProviderState.PENDING, ProviderState.RUNNING)
    assert listed[running].node_type == "cpu"
    assert listed[running].tags[TAG_CLUSTER] == "test"
    assert listed[running].internal_ip


def test_list_follows_pagination_in_one_logical_call(make_provider: MakeProvider) -> None:
    provider = make_provider(batch_size=5)
    offering = provider.offerings("cpu")[0]
    # moto pages by reservation (one per RunInstances), EC2 by instance: 12 launches of one.
    launched = [i for n in range(12) for i in provider.launch("cpu", offering, 1, f"req-{n}")]
    fresh = make_provider(batch_size=5)
    calls = record_calls(fresh.clients.ec2)
    assert sorted(i.id for i in fresh.list_instances()) == sorted(i.id for i in launched)
    assert calls.count("DescribeInstances") == 3  # pages of 5, 5, 2


def test_just_launched_instance_missing_from_describe_is_not_lost(
    make_provider: MakeProvider, clock: Any
) -> None:
    provider = make_provider()
    (instance,) = provider.launch("cpu", provider.offerings("cpu")[0], 1, "req-1")
    # EC2 is eventually consistent: DescribeInstances may not show it for a few seconds.
    inject(provider.clients.ec2, "DescribeInstances", reply={"Reservations": []}, times=2)
    assert [i.id for i in provider.list_instances()] == [instance.id]
    clock.advance(600)
    assert provider.list_instances() == []  # after the grace period, absence is believed


def test_terminate_unknown_and_malformed_ids_is_success(
    make_provider: MakeProvider, ec2: Any
) -> None:
    provider = make_provider()
    (instance,) = provider.launch("cpu", provider.offerings("cpu")[0], 1, "req-1")
    provider.terminate(["i-0123456789abcdef0", instance.id, "not-an-id"])
    assert _states(ec2, [instance.id]) == {instance.id: "terminated"}
    provider.terminate([instance.id])  # already gone: still success
    assert provider.list_instances() == []


def test_terminate_in_batches(make_provider: MakeProvider, ec2: Any) -> None:
    provider = make_provider(batch_size=2)
    ids = [i.id for i in provider.launch("cpu", provider.offerings("cpu")[0], 5, "req-1")]
    calls = record_calls(provider.clients.ec2)
    provider.terminate(ids)
    assert calls.count("TerminateInstances") == 3
    assert set(_states(ec2, ids).values()) == {"terminated"}


def test_cache_stopped_nodes_stops_then_reuses(make_provider: MakeProvider, ec2: Any) -> None:
    provider = make_provider(provider=provider_section(cache_stopped_nodes=True))
    offering = provider.offerings("cpu")[0]
    (first,) = provider.launch("cpu", offering, 1, "req-1")
    spot = provider.launch("gpu_spot", provider.offerings("gpu_spot")[0], 1, "req-s")[0]
    provider.terminate([first.id, spot.id])
    assert _states(ec2, [first.id, spot.id]) == {first.id: "stopped", spot.id: "terminated"}
    assert [i.state for i in provider.list_instances()] == [ProviderState.STOPPED]

    calls = record_calls(provider.clients.ec2)
    reused = provider.launch("cpu", offering, 2, "req-2")
    assert [i.id for i in reused][0] == first.id
    assert calls.count("StartInstances") == 1 and calls.count("RunInstances") == 1
    assert _states(ec2, [first.id])[first.id] in ("pending", "running")
    listed = {i.id: i for i in provider.list_instances()}
    assert listed[first.id].tags[TAG_REQUEST_ID] == "req-2"
    assert len(listed) == 2


def test_cached_node_of_another_launch_config_is_not_reused(
    make_provider: MakeProvider,
) -> None:
    provider = make_provider(provider=provider_section(cache_stopped_nodes=True))
    offering = provider.offerings("cpu")[0]
    (first,) = provider.launch("cpu", offering, 1, "req-1")
    provider.terminate([first.id])
    changed = provider.launch("cpu", offering, 1, "req-2", tags={"rayctl-launch-config": "v2"})
    assert changed[0].id != first.id

"""The fake provider: the shared contract, then its knobs (capacity, delay, quota, next error)."""

from __future__ import annotations

from typing import Any

import pytest
from provider_contract import CLUSTER, LimitedFactory, ProviderContract, ProviderFactory

from autoscaler.config import validate_config
from providers.base import (
    CapacityError,
    CommandResult,
    ConfigError,
    Market,
    Offering,
    ProviderState,
    QuotaError,
    TransientError,
)
from providers.fake import FakeClock, FakeProvider

NODE_TYPES: dict[str, dict[str, Any]] = {
    "worker": {
        "resources": {"CPU": 4},
        "node_config": {"instance_type": ["m5.xlarge", "m6i.xlarge"], "zones": ["a", "b"]},
    },
    "gpu": {
        "node_config": {"instance_type": "p3", "market": "spot", "resources": {"GPU": 8}},
    },
    "bare": {},
}


def make(provider_config: dict[str, Any] | None = None, clock: FakeClock | None = None) -> FakeProvider:
    return FakeProvider(CLUSTER, {"type": "fake", **(provider_config or {})}, NODE_TYPES,
                        clock=clock or FakeClock())


class TestFakeContract(ProviderContract):
    node_type = "worker"
    expected_offerings = [
        Offering("m5.xlarge", "a"),
        Offering("m5.xlarge", "b"),
        Offering("m6i.xlarge", "a"),
        Offering("m6i.xlarge", "b"),
    ]

    @pytest.fixture
    def provider_factory(self) -> ProviderFactory:
        # One in-memory cloud per cluster name: every "new provider" sees the same one.
        clouds: dict[str, FakeProvider] = {}
        return lambda name: clouds.setdefault(name, FakeProvider(name, {}, NODE_TYPES))

    @pytest.fixture
    def limited_factory(self) -> LimitedFactory:
        return lambda name, capacity: FakeProvider(
            name, {"capacity": {"m5.xlarge/a/on-demand": capacity}}, NODE_TYPES
        )


def test_offerings_and_resources_come_from_node_config() -> None:
    provider = make()
    assert provider.offerings("gpu") == [Offering("p3", "", Market.SPOT)]
    assert provider.offerings("bare") == [Offering("bare")]  # defaults to the type's name
    assert provider.node_resources("gpu") == {"GPU": 8}
    assert provider.node_resources("worker") == {}
    with pytest.raises(ConfigError, match="unknown node type 'nope'"):
        provider.offerings("nope")


def test_instances_stay_pending_until_the_launch_delay_passes() -> None:
    clock = FakeClock()
    provider = make({"launch_delay_s": 30}, clock)
    (instance,) = provider.launch("gpu", provider.offerings("gpu")[0], 1, "r1")
    assert instance.state is ProviderState.PENDING
    assert instance.launched_at == clock()
    clock.advance(29.9)
    assert [i.state for i in provider.list_instances()] == [ProviderState.PENDING]
    clock.advance(0.1)
    assert [i.state for i in provider.list_instances()] == [ProviderState.RUNNING]


def test_capacity_is_consumed_per_offering_then_raises_capacity_error() -> None:
    provider = make({"capacity": {"m5.xlarge": 3}})
    first, second = provider.offerings("worker")[:2]  # same instance type, zones a and b
    assert len(provider.launch("worker", first, 2, "r1")) == 2
    assert len(provider.launch("worker", second, 5, "r2")) == 1  # partial: what is left
    with pytest.raises(CapacityError) as caught:
        provider.launch("worker", first, 1, "r3")
    assert caught.value.offering == first
    other = provider.offerings("worker")[2]  # m6i has no limit
    assert len(provider.launch("worker", other, 4, "r4")) == 4


def test_an_offering_key_limits_only_that_zone() -> None:
    provider = make()
    provider.capacity["m5.xlarge/a/on-demand"] = 0
    zone_a, zone_b = provider.offerings("worker")[:2]
    with pytest.raises(CapacityError):
        provider.launch("worker", zone_a, 1, "r1")
    assert len(provider.launch("worker", zone_b, 1, "r2")) == 1


def test_quota_limits_live_instances() -> None:
    provider = make({"quota": 2})
    offering = provider.offerings("gpu")[0]
    with pytest.raises(QuotaError) as caught:
        provider.launch("gpu", offering, 3, "r1", all_or_nothing=True)
    assert caught.value.quota == "fake-instances"
    launched = provider.launch("gpu", offering, 3, "r2")
    assert len(launched) == 2
    with pytest.raises(QuotaError):
        provider.launch("gpu", offering, 1, "r3")
    provider.terminate([launched[0].id])  # a freed slot of the quota can be used again
    assert len(provider.launch("gpu", offering, 1, "r4")) == 1


def test_next_error_is_raised_once_by_the_named_method() -> None:
    provider = make()
    offering = provider.offerings("gpu")[0]
    provider.fail_next("launch", TransientError("throttled"))
    with pytest.raises(TransientError, match="throttled"):
        provider.launch("gpu", offering, 1, "r1")
    assert provider.list_instances() == []  # the failed call launched nothing
    assert len(provider.launch("gpu", offering, 1, "r1")) == 1
    provider.next_error["list_instances"] = TransientError("eventual consistency")
    with pytest.raises(TransientError):
        provider.list_instances()
    assert len(provider.list_instances()) == 1


def test_every_call_is_recorded_with_its_arguments() -> None:
    provider = make()
    offering = provider.offerings("gpu")[0]
    provider.bootstrap()
    (instance,) = provider.launch("gpu", offering, 1, "r1", tags={"k": "v"})
    provider.terminate([instance.id, "ghost"])
    provider.list_instances()
    assert [name for name, _ in provider.calls] == [
        "bootstrap", "launch", "terminate", "list_instances"
    ]
    assert provider.calls_of("launch") == [{
        "node_type": "gpu", "offering": offering, "count": 1, "request_id": "r1",
        "tags": {"k": "v"}, "all_or_nothing": False,
    }]
    assert provider.calls_of("terminate") == [{"instance_ids": [instance.id, "ghost"]}]


def test_command_runner_records_commands_and_scripted_results() -> None:
    provider = make()
    (instance,) = provider.launch("gpu", provider.offerings("gpu")[0], 1, "r1")
    provider.command_results["pip install"] = CommandResult(1, "no network")
    runner = provider.command_runner(instance)
    assert runner.run("rayctl start").exit_code == 0
    assert runner.run("pip install rayctl") == CommandResult(1, "no network")
    assert provider.commands == [(instance.id, "rayctl start"), (instance.id, "pip install rayctl")]


def test_knobs_can_come_from_the_cluster_yaml() -> None:
    config = validate_config({
        "cluster_name": "sim",
        "provider": {"type": "fake", "launch_delay_s": 5, "capacity": {"p3": 1}, "quota": 10},
        "available_node_types": {"gpu": NODE_TYPES["gpu"]},
    })
    provider = FakeProvider(config.cluster_name, config.provider, config.node_types_for_provider())
    assert (provider.launch_delay_s, provider.capacity, provider.quota) == (5, {"p3": 1}, 10)
    assert provider.offerings("gpu") == [Offering("p3", "", Market.SPOT)]


def test_fake_clock_moves_only_forward_and_sleep_does_not_block() -> None:
    clock = FakeClock(start=100.0)
    clock.sleep(600)  # returns at once: virtual time
    assert clock() == 700.0
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)

"""Launching on AWS against moto: tags, idempotency, spot, offerings, failover, error mapping."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from aws_fakes import CLUSTER, inject, provider_section, record_calls

from providers.aws import AWSProvider
from providers.aws.iam import head_policy
from providers.base import (
    TAG_CLUSTER,
    TAG_LAUNCH_HASH,
    TAG_NAME,
    TAG_NODE_KIND,
    TAG_NODE_TYPE,
    TAG_REQUEST_ID,
    AuthError,
    CapacityError,
    Market,
    Offering,
    ProviderState,
    QuotaError,
    TransientError,
)

MakeProvider = Callable[..., AWSProvider]


def _raw(ec2: Any, instance_id: str) -> dict[str, Any]:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return dict(reservations[0]["Instances"][0])


def _tags(raw: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in raw.get("Tags", [])}


def _count_live(ec2: Any) -> int:
    filters = [{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    return sum(len(r["Instances"]) for r in ec2.describe_instances(Filters=filters)["Reservations"])


def test_offerings_follow_config_order_with_spot_fallback(make_provider: MakeProvider) -> None:
    provider = make_provider(provider=provider_section(spot_fallback_to_on_demand=True))
    assert provider.offerings("cpu") == [
        Offering("m5.large", "us-west-2a"),
        Offering("m5.large", "us-west-2b"),
        Offering("m5.xlarge", "us-west-2a"),
        Offering("m5.xlarge", "us-west-2b"),
    ]
    spot = Market.SPOT
    assert provider.offerings("gpu_spot") == [
        Offering("g4dn.xlarge", "us-west-2a", spot),
        Offering("g4dn.xlarge", "us-west-2b", spot),
        Offering("g4dn.xlarge", "us-west-2a"),
        Offering("g4dn.xlarge", "us-west-2b"),
    ]


def test_launch_tags_network_and_head_profile(make_provider: MakeProvider, ec2: Any) -> None:
    provider = make_provider()
    resolved = provider.bootstrap()["resolved"]
    offering = Offering("m5.xlarge", "us-west-2b")
    workers = provider.launch("cpu", offering, 2, "req-1", tags={TAG_LAUNCH_HASH: "abc"})
    (head,) = provider.launch(
        "head", provider.offerings("head")[0], 1, "req-head", tags={TAG_NODE_KIND: "head"}
    )

    assert len(workers) == 2
    raw = _raw(ec2, workers[0].id)
    assert _tags(raw) == {
        TAG_CLUSTER: CLUSTER,
        TAG_NODE_TYPE: "cpu",
        TAG_NODE_KIND: "worker",
        TAG_LAUNCH_HASH: "abc",
        TAG_REQUEST_ID: "req-1",
        TAG_NAME: f"rayctl-{CLUSTER}-worker",
    }
    assert workers[0].node_type == "cpu" and workers[0].offering.instance_type == "m5.xlarge"
    assert raw["InstanceType"] == "m5.xlarge"
    assert raw["SubnetId"] == resolved["subnets"]["cpu"]["us-west-2b"]
    assert raw["Placement"]["AvailabilityZone"] == "us-west-2b"
    assert [g["GroupId"] for g in raw["SecurityGroups"]] == resolved["security_group_ids"]
    assert raw["KeyName"] == resolved["key_name"]
    assert "IamInstanceProfile" not in raw  # workers get no role
    head_raw = _raw(ec2, head.id)
    assert head.is_head and _tags(head_raw)[TAG_NAME] == f"rayctl-{CLUSTER}-head"
    assert head_raw["IamInstanceProfile"]["Arn"] == resolved["head_instance_profile_arn"]


def test_same_request_id_never_launches_twice(make_provider: MakeProvider, ec2: Any) -> None:
    provider = make_provider()
    offering = provider.offerings("cpu")[0]
    first = provider.launch("cpu", offering, 3, "req-1")
    # A retry after a lost reply, from a fresh provider (as after a monitor restart).
    again = make_provider().launch("cpu", offering, 3, "req-1")
    assert sorted(i.id for i in again) == sorted(i.id for i in first)
    assert _count_live(ec2) == 3


def test_retry_within_one_process_is_idempotent_even_if_describe_lags(
    make_provider: MakeProvider, ec2: Any
) -> None:
    provider = make_provider()
    offering = provider.offerings("cpu")[0]
    first = provider.launch("cpu", offering, 2, "req-1")
    inject(provider.clients.ec2, "DescribeInstances", reply={"Reservations": []}, times=5)
    again = provider.launch("cpu", offering, 2, "req-1")
    assert [i.id for i in again] == [i.id for i in first]
    assert _count_live(ec2) == 2


def test_spot_launch_sets_market_options_and_user_data(
    make_provider: MakeProvider, ec2: Any
) -> None:
    node_types = {
        "gpu_spot": {
            "node_config": {
                "InstanceType": "g4dn.xlarge",
                "ImageId": "ami-12c6146b",
                "InstanceMarketOptions": {
                    "MarketType": "spot",
                    "SpotOptions": {"MaxPrice": "1.00"},
                },
                "UserData": "#!/bin/sh\necho hello\n",
            }
        }
    }
    provider = make_provider(node_types=node_types)
    calls = record_calls(provider.clients.ec2)
    sent: list[dict[str, Any]] = []
    provider.clients.ec2.meta.events.register(
        "provide-client-params.ec2.RunInstances", lambda params, **_: sent.append(dict(params))
    )
    (instance,) = provider.launch("gpu_spot", provider.offerings("gpu_spot")[0], 1, "req-1")

    assert calls.count("RunInstances") == 1
    assert sent[0]["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {"MaxPrice": "1.00"},
    }
    raw = _raw(ec2, instance.id)
    assert raw.get("InstanceLifecycle") == "spot"
    assert instance.offering.market is Market.SPOT
    user_data = ec2.describe_instance_attribute(InstanceId=instance.id, Attribute="userData")
    assert base64.b64decode(user_data["UserData"]["Value"]).decode() == "#!/bin/sh\necho hello\n"


def test_capacity_error_names_the_offering_and_the_next_one_works(
    make_provider: MakeProvider,
) -> None:
    provider = make_provider()
    subnet_a = provider.bootstrap()["resolved"]["subnets"]["cpu"]["us-west-2a"]
    first, second = provider.offerings("cpu")[:2]
    # EC2 returns ICE with HTTP 500, which botocore's default policy would retry three times.
    ice = inject(
        provider.clients.ec2,
        "RunInstances",
        "InsufficientInstanceCapacity",
        status=500,
        times=10,
        when=lambda p: (p["InstanceType"], p["SubnetId"]) == ("m5.large", subnet_a),
    )
    with pytest.raises(CapacityError) as caught:
        provider.launch("cpu", first, 1, "req-1")
    assert caught.value.offering == first
    assert ice.injected == 1  # no retry: the autoscaler fails over at once

    (instance,) = provider.launch("cpu", second, 1, "req-1")
    assert instance.offering.zone == second.zone == "us-west-2b"


@pytest.mark.parametrize(
    "code", ["SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded", "Unsupported"]
)
def test_other_capacity_codes_are_capacity_errors(make_provider: MakeProvider, code: str) -> None:
    provider = make_provider()
    offering = provider.offerings("gpu_spot")[0]
    inject(provider.clients.ec2, "RunInstances", code)
    with pytest.raises(CapacityError) as caught:
        provider.launch("gpu_spot", offering, 1, "req-1")
    assert caught.value.offering == offering


def test_quota_error_names_the_quota_without_retrying(
    make_provider: MakeProvider, sleeps: Any
) -> None:
    provider = make_provider()
    message = "You have requested more vCPU capacity than your current vCPU limit of 0 allows"
    quota = inject(
        provider.clients.ec2, "RunInstances", "VcpuLimitExceeded", times=10, message=message
    )
    with pytest.raises(QuotaError) as caught:
        provider.launch("gpu_spot", provider.offerings("gpu_spot")[0], 1, "req-1")
    assert caught.value.quota == "EC2 vCPU quota 'All G and VT Spot Instance Requests'"
    assert "All G and VT Spot Instance Requests" in str(caught.value)
    assert quota.injected == 1 and sleeps.slept == []


def test_auth_error_names_the_missing_permission(make_provider: MakeProvider) -> None:
    provider = make_provider()
    provider.bootstrap()
    denial = (
        "You are not authorized to perform this operation. User: arn:aws:iam::1:user/x "
        "is not authorized to perform: ec2:RunInstances on resource: arn:aws:ec2:::x"
    )
    inject(
        provider.clients.ec2, "RunInstances", "UnauthorizedOperation", status=403, message=denial
    )
    with pytest.raises(AuthError, match="ec2:RunInstances"):
        provider.launch("cpu", provider.offerings("cpu")[0], 1, "req-1")
    inject(
        provider.clients.ec2,
        "DescribeInstances",
        "AuthFailure",
        status=401,
        message="AWS was not able to validate the provided access credentials",
    )
    with pytest.raises(AuthError, match="ec2:DescribeInstances"):
        provider.list_instances()


def test_throttling_is_retried_with_backoff_then_succeeds(
    make_provider: MakeProvider, sleeps: Any, ec2: Any
) -> None:
    provider = make_provider()
    provider.bootstrap()
    throttle = inject(
        provider.clients.ec2, "RunInstances", "RequestLimitExceeded", status=503, times=2
    )
    (instance,) = provider.launch("cpu", provider.offerings("cpu")[0], 1, "req-1")
    assert throttle.injected == 2 and _count_live(ec2) == 1
    assert len(sleeps.slept) == 2
    assert 0 <= sleeps.slept[0] <= 0.5 and 0 <= sleeps.slept[1] <= 1.0  # full jitter, doubling
    assert instance.state in (ProviderState.PENDING, ProviderState.RUNNING)


def test_throttling_gives_up_after_a_bounded_number_of_attempts(
    make_provider: MakeProvider, sleeps: Any
) -> None:
    provider = make_provider(retry_attempts=3)
    inject(provider.clients.ec2, "DescribeInstances", "Throttling", status=400, times=100)
    with pytest.raises(TransientError):
        provider.list_instances()
    assert len(sleeps.slept) == 2


def test_head_policy_allows_every_ec2_call_the_autoscaler_makes(
    make_provider: MakeProvider,
) -> None:
    config = make_provider().bootstrap()
    config["cache_stopped_nodes"] = True
    head_side = make_provider(provider=config)  # what the monitor on the head runs
    calls = record_calls(head_side.clients.ec2)
    offering = head_side.offerings("cpu")[0]
    head_side.node_resources("gpu_spot")
    first = head_side.launch("cpu", offering, 2, "req-1")
    head_side.list_instances()
    head_side.terminate([first[0].id])  # cached: stopped
    head_side.launch(
        "cpu", offering, 1, "req-2", tags={TAG_LAUNCH_HASH: first[0].tags[TAG_LAUNCH_HASH]}
    )  # restarts and retags it
    head_side.launch("gpu_spot", head_side.offerings("gpu_spot")[0], 1, "req-3")
    head_side.terminate(
        [i.id for i in head_side.list_instances() if i.offering.market is Market.SPOT]
    )

    allowed: set[str] = set()
    for statement in head_policy(CLUSTER)["Statement"]:
        actions = statement["Action"]
        allowed.update([actions] if isinstance(actions, str) else actions)
    called = {f"ec2:{op}" for op in calls.operations}
    assert {"ec2:StartInstances", "ec2:StopInstances", "ec2:CreateTags"} <= called
    assert called <= allowed


def test_ice_over_the_wire_is_not_retried_by_botocore(make_provider: MakeProvider) -> None:
    """ICE comes back as HTTP 500, which botocore's standard policy retries: the provider's
    client must not, or every failover would wait through three attempts first."""
    provider = make_provider()
    provider.bootstrap()
    ice = inject(
        provider.clients.ec2,
        "RunInstances",
        "InsufficientInstanceCapacity",
        status=500,
        times=10,
        on_the_wire=True,
    )
    with pytest.raises(CapacityError):
        provider.launch("cpu", provider.offerings("cpu")[0], 1, "req-1")
    assert ice.attempts == 1

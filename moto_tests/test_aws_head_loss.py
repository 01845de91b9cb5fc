"""An AWS worker whose head is gone powers itself off, and that ends the instance: workers
launch with InstanceInitiatedShutdownBehavior=terminate, the head does not (it keeps the
cluster's state and is ended by `rayctl down` only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from providers.aws import AWSProvider
from providers.base import TAG_NODE_KIND

MakeProvider = Callable[..., AWSProvider]


def _shutdown_behavior(ec2: Any, instance_id: str) -> str:
    reply = ec2.describe_instance_attribute(
        InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior"
    )
    return str(reply["InstanceInitiatedShutdownBehavior"]["Value"])


def test_workers_terminate_on_power_off_and_the_head_does_not(
    make_provider: MakeProvider, ec2: Any
) -> None:
    provider = make_provider()
    provider.bootstrap()
    workers = provider.launch("cpu", provider.offerings("cpu")[0], 2, "req-w")
    (head,) = provider.launch(
        "head", provider.offerings("head")[0], 1, "req-h", tags={TAG_NODE_KIND: "head"}
    )
    assert [_shutdown_behavior(ec2, w.id) for w in workers] == ["terminate", "terminate"]
    assert _shutdown_behavior(ec2, head.id) == "stop"
    assert provider.end_machine_command("cpu") == "sudo shutdown -h now"

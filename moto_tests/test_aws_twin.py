"""A twin on AWS (moto): a monitor dies inside the first offering's RunInstances (EC2 made the
instance; nobody read the reply), the next monitor's lookup by request id lags and the first
offering has no capacity any more, so the next offering launches the batch again under the same
request id. The leak sweep keeps the instance the record owns and terminates the twin."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError
from test_aws_batch import AMI, NoInstall, ReplyLost

from autoscaler.executor import Executor
from autoscaler.lifecycle_store import InMemoryLifecycleStore
from autoscaler.model import LaunchAction, LaunchCause, NodeTypeSpec, Plan, ScalingConfig
from autoscaler.observe import GcsView, Observation
from autoscaler.reconciler import Reconciler
from autoscaler.settings import Settings
from providers.aws import AWSProvider
from providers.base import TAG_REQUEST_ID, NodeProvider, ProviderState

LIVE = (ProviderState.PENDING, ProviderState.RUNNING)


def provider(tmp_path: Path) -> AWSProvider:
    section = {
        "type": "aws",
        "region": "us-west-2",
        "availability_zone": "us-west-2a",
        "ssh_cidr": "203.0.113.7/32",
    }
    types = {
        "cpu": {
            "node_config": {"InstanceType": ["m5.large", "m5.xlarge"], "ImageId": AMI},
            "max_workers": 2,
        }
    }
    return AWSProvider("twin", section, types, key_dir=tmp_path / "keys")


def step_once(store: InMemoryLifecycleStore, aws: AWSProvider, plan: Plan) -> None:
    """One reconciler step of a fresh monitor process over the same store, waited for."""
    cloud = cast(NodeProvider, aws)
    scaling = ScalingConfig.of([NodeTypeSpec("cpu", {"CPU": 2}, max_workers=2)], max_workers=2)
    executor = Executor(cloud, NoInstall())
    try:
        obs = Observation(GcsView(), tuple(cloud.list_instances()), tuple(store.all()))
        reconciler = Reconciler(
            store, cloud, executor, scaling, time.time, Settings(leak_grace_s=0)
        )
        reconciler.step(plan, obs)
        executor.wait_idle(120)
    finally:
        executor.shutdown()


def test_the_leak_sweep_terminates_a_twin_under_a_live_request_id(
    aws: None, tmp_path: Path
) -> None:
    cloud = provider(tmp_path)
    events = cloud.clients.ec2.meta.events
    store = InMemoryLifecycleStore()

    def monitor_dies(**_: Any) -> None:
        raise ReplyLost("the monitor died before it read the reply")

    events.register("after-call.ec2.RunInstances", monitor_dies)
    plan = Plan(launches=(LaunchAction("cpu", 1, "1 queued", LaunchCause.QUEUED_DEMAND),))
    step_once(store, cloud, plan)
    events.unregister("after-call.ec2.RunInstances", monitor_dies)
    (first,) = cloud.list_instances()
    assert first.offering.instance_type == "m5.large"

    def lookup_lags(params: dict[str, Any], **_: Any) -> Any:
        body = params.get("body", {})  # the query request: Filter.N.Name = ...
        if f"tag:{TAG_REQUEST_ID}" in body.values():
            return _Ok(), {"Reservations": []}  # the listing has not caught up yet
        return None

    def no_capacity(params: dict[str, Any], **_: Any) -> None:
        if params["InstanceType"] == "m5.large":
            error = {"Error": {"Code": "InsufficientInstanceCapacity", "Message": "none left"}}
            raise ClientError(error, "RunInstances")

    events.register("before-call.ec2.DescribeInstances", lookup_lags)
    events.register("before-parameter-build.ec2.RunInstances", no_capacity)
    step_once(store, cloud, Plan())  # a new monitor resends the batch: the next offering
    events.unregister("before-call.ec2.DescribeInstances", lookup_lags)
    events.unregister("before-parameter-build.ec2.RunInstances", no_capacity)

    (record,) = store.all()
    twins = [i for i in cloud.list_instances() if i.state in LIVE]
    assert len(twins) == 2 and {i.tags[TAG_REQUEST_ID] for i in twins} == {record.request_id}
    owned = record.cloud_instance_id
    assert owned in {i.id for i in twins}

    step_once(store, cloud, Plan())  # the leak sweep of the next round
    left = [i for i in cloud.list_instances() if i.state in LIVE]
    assert [i.id for i in left] == [owned]  # the twin is terminated, the owned one kept


class _Ok:
    status_code = 200


@pytest.fixture
def aws() -> Any:
    from moto import mock_aws

    with mock_aws():
        yield

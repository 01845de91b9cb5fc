"""The autoscaler's batches on AWS (moto): 50 nodes of one type are one RunInstances call, and a
monitor that died after that call (its reply lost) is followed by one that resends the batch
under the same request id and gets the same 50 instances back: no second RunInstances."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import pytest

from autoscaler.executor import Executor
from autoscaler.installer import InstallResult
from autoscaler.lifecycle import InstanceStatus
from autoscaler.lifecycle_store import InMemoryLifecycleStore
from autoscaler.model import LaunchAction, LaunchCause, NodeTypeSpec, Plan, ScalingConfig
from autoscaler.observe import GcsView, Observation
from autoscaler.reconciler import Reconciler
from providers.aws import AWSProvider
from providers.base import TAG_REQUEST_ID, Instance, NodeProvider

S = InstanceStatus
AMI = "ami-12c6146b"  # in moto's default image set
NODES = 50


class NoInstall:
    def install(self, instance: Instance) -> InstallResult:
        return InstallResult(True)


def provider(tmp_path: Path) -> AWSProvider:
    section = {"type": "aws", "region": "us-west-2", "availability_zone": "us-west-2a",
               "ssh_cidr": "203.0.113.7/32"}
    types = {"cpu": {"node_config": {"InstanceType": "m5.large", "ImageId": AMI},
                     "max_workers": NODES}}
    return AWSProvider("batch", section, types, key_dir=tmp_path / "keys")


def step_once(store: InMemoryLifecycleStore, aws: AWSProvider, plan: Plan) -> None:
    """One reconciler step of a fresh monitor process, waited for."""
    cloud = cast(NodeProvider, aws)
    scaling = ScalingConfig.of([NodeTypeSpec("cpu", {"CPU": 2}, max_workers=NODES)],
                               max_workers=NODES)
    executor = Executor(cloud, NoInstall())
    try:
        Reconciler(store, cloud, executor, scaling, time.time).step(
            plan, Observation(GcsView(), (), tuple(store.all()))
        )
        executor.wait_idle(120)
    finally:
        executor.shutdown()


class ReplyLost(RuntimeError):
    pass


def test_fifty_nodes_are_one_run_instances_call_and_a_resend_launches_none(
    aws: None, tmp_path: Path
) -> None:
    cloud = provider(tmp_path)
    events = cloud.clients.ec2.meta.events
    run_calls: list[dict[str, Any]] = []
    events.register("before-call.ec2.RunInstances", lambda params, **_: run_calls.append(params))

    def lose_the_reply(**_: Any) -> None:
        raise ReplyLost("the monitor died before it read the reply")

    events.register("after-call.ec2.RunInstances", lose_the_reply)
    store = InMemoryLifecycleStore()
    plan = Plan(launches=(LaunchAction("cpu", NODES, "50 queued", LaunchCause.QUEUED_DEMAND),))
    step_once(store, cloud, plan)
    assert len(run_calls) == 1
    assert run_calls[0]["body"]["MinCount"] == run_calls[0]["body"]["MaxCount"] == NODES
    assert {r.status for r in store.all()} == {InstanceStatus.REQUESTED}  # nobody heard back
    assert len(cloud.list_instances()) == NODES  # but EC2 made them

    events.unregister("after-call.ec2.RunInstances", lose_the_reply)
    step_once(store, cloud, Plan())  # a new monitor: the REQUESTED batch is resent
    assert len(run_calls) == 1  # found by its request id; nothing launched again
    records = store.all()
    instances = {i.id: i for i in cloud.list_instances()}
    assert len(instances) == NODES
    assert sorted(r.cloud_instance_id for r in records) == sorted(instances)  # one each
    # the VMs exist (moto reports them running, so their installs began)
    assert {r.status for r in records} <= {S.ALLOCATED, S.RAYLET_INSTALLING}
    (request_id,) = {r.request_id for r in records}
    assert {i.tags[TAG_REQUEST_ID] for i in instances.values()} == {request_id}


@pytest.fixture
def aws() -> Any:
    from moto import mock_aws

    with mock_aws():
        yield

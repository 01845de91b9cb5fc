"""Bootstrap and purge of the AWS provider against moto."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_fakes import (
    AMI,
    CLUSTER,
    REGION,
    SSH_CIDR,
    node_types_section,
    provider_section,
    record_calls,
)

from providers.aws import AWSProvider
from providers.aws.iam import role_name
from providers.base import ConfigError, ProviderError

MakeProvider = Callable[..., AWSProvider]


def _cluster_groups(ec2: Any) -> list[dict[str, Any]]:
    filters = [{"Name": "group-name", "Values": [f"rayctl-{CLUSTER}"]}]
    return list(ec2.describe_security_groups(Filters=filters)["SecurityGroups"])


def test_bootstrap_creates_prerequisites_once(
    make_provider: MakeProvider, ec2: Any, tmp_path: Path
) -> None:
    provider = make_provider()
    first = provider.bootstrap()
    calls = record_calls(provider.clients.ec2)
    iam_calls = record_calls(provider.clients.iam)
    second = provider.bootstrap()

    assert second == first
    creating = [
        op
        for op in calls.operations + iam_calls.operations
        if op.startswith(("Create", "Authorize", "Put", "Add"))
    ]
    assert creating == ["PutRolePolicy"]  # overwrites our own policy in place, creates nothing
    resolved = first["resolved"]
    assert list(resolved["subnets"]["cpu"]) == ["us-west-2a", "us-west-2b"]
    assert [g["GroupId"] for g in _cluster_groups(ec2)] == resolved["security_group_ids"]
    assert len(ec2.describe_key_pairs()["KeyPairs"]) == 1
    key = Path(resolved["ssh_private_key"])
    assert key.parent == tmp_path / "keys"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in key.read_text()
    assert first["warnings"] == []
    assert resolved["image_ids"] == dict.fromkeys(node_types_section(), AMI)
    iam = boto3.client("iam", region_name=REGION)
    profile = iam.get_instance_profile(InstanceProfileName=role_name(CLUSTER))["InstanceProfile"]
    assert profile["Arn"] == resolved["head_instance_profile_arn"]
    assert [r["RoleName"] for r in profile["Roles"]] == [role_name(CLUSTER)]


def test_security_group_allows_cluster_traffic_and_ssh_only_from_cidr(
    make_provider: MakeProvider, ec2: Any
) -> None:
    make_provider().bootstrap()
    (group,) = _cluster_groups(ec2)
    rules = group["IpPermissions"]
    internal = [r for r in rules if r["IpProtocol"] == "-1"]
    assert [p["GroupId"] for p in internal[0]["UserIdGroupPairs"]] == [group["GroupId"]]
    assert internal[0]["IpRanges"] == []
    ssh = [r for r in rules if r.get("FromPort") == 22]
    assert [c["CidrIp"] for c in ssh[0]["IpRanges"]] == [SSH_CIDR]
    assert len(rules) == 2


def test_without_ssh_cidr_no_ssh_ingress_and_a_warning(
    make_provider: MakeProvider, ec2: Any
) -> None:
    section = provider_section()
    del section["ssh_cidr"]
    config = make_provider(provider=section).bootstrap()
    (group,) = _cluster_groups(ec2)
    assert all(r.get("FromPort") != 22 for r in group["IpPermissions"])
    assert any("provider.ssh_cidr" in w for w in config["warnings"])


def test_returned_config_builds_a_provider_that_needs_no_bootstrap(
    make_provider: MakeProvider,
) -> None:
    config = make_provider().bootstrap()
    head_side = make_provider(provider=config)
    calls = record_calls(head_side.clients.ec2)
    head_side.launch("cpu", head_side.offerings("cpu")[0], 1, "req-1")
    assert not any(
        op.startswith(("Create", "DescribeSubnets", "DescribeVpcs")) for op in calls.operations
    )


def test_image_looked_up_by_name_when_node_config_has_none(
    make_provider: MakeProvider, ec2: Any
) -> None:
    node_types = {"cpu": {"node_config": {"InstanceType": "m5.large"}}}
    pattern = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-{arch}-server-*"
    provider = make_provider(provider=provider_section(image_name=pattern), node_types=node_types)
    resolved = provider.bootstrap()["resolved"]
    filters = [{"Name": "name", "Values": [pattern.format(arch="amd64")]}]
    (image,) = ec2.describe_images(Owners=["099720109477"], Filters=filters)["Images"]
    assert resolved["image_ids"] == {"cpu": image["ImageId"]}


def test_no_matching_image_is_a_config_error(make_provider: MakeProvider) -> None:
    node_types = {"cpu": {"node_config": {"InstanceType": "m5.large"}}}
    provider = make_provider(node_types=node_types)  # default: Ubuntu 24.04, not in moto
    with pytest.raises(ConfigError, match="ImageId"):
        provider.bootstrap()


def test_key_pair_without_its_local_file_is_a_clear_error(
    make_provider: MakeProvider, tmp_path: Path
) -> None:
    config = make_provider().bootstrap()
    Path(config["resolved"]["ssh_private_key"]).unlink()
    with pytest.raises(ConfigError, match="delete-key-pair"):
        make_provider().bootstrap()


def test_configured_key_group_and_profile_are_used_not_created(
    make_provider: MakeProvider, ec2: Any
) -> None:
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(GroupName="mine", Description="x", VpcId=vpc)["GroupId"]
    ec2.create_key_pair(KeyName="mine")
    node_config = {
        "InstanceType": "m5.large",
        "ImageId": "ami-12c6146b",
        "KeyName": "mine",
        "SecurityGroupIds": [group],
        "IamInstanceProfile": {"Name": "mine"},
    }
    provider = make_provider(node_types={"cpu": {"node_config": node_config}})
    resolved = provider.bootstrap()["resolved"]
    assert resolved["security_group_ids"] == []
    assert resolved["key_name"] == ""
    assert resolved["head_instance_profile_arn"] == ""
    assert _cluster_groups(ec2) == []


def test_purge_deletes_only_what_bootstrap_created(make_provider: MakeProvider, ec2: Any) -> None:
    iam = boto3.client("iam", region_name=REGION)
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    foreign_group = ec2.create_security_group(GroupName="other", Description="x", VpcId=vpc)
    ec2.create_key_pair(KeyName="other")
    iam.create_role(RoleName="other", AssumeRolePolicyDocument=json.dumps({}))
    other_cluster = make_provider(cluster="other-cluster")
    other_cluster.bootstrap()
    provider = make_provider()
    key_path = Path(provider.bootstrap()["resolved"]["ssh_private_key"])

    provider.purge()

    assert _cluster_groups(ec2) == []
    groups = {g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    assert {"other", "rayctl-other-cluster", "default"} <= groups
    assert foreign_group["GroupId"]
    keys = {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}
    assert keys == {"other", f"rayctl-other-cluster-{REGION}"}
    assert not key_path.exists()
    roles = {r["RoleName"] for r in iam.list_roles()["Roles"]}
    assert "other" in roles and role_name("other-cluster") in roles
    assert role_name(CLUSTER) not in roles
    provider.purge()  # a second purge finds nothing and succeeds


def test_purge_refuses_while_instances_run(make_provider: MakeProvider) -> None:
    provider = make_provider()
    provider.bootstrap()
    provider.launch("cpu", provider.offerings("cpu")[0], 1, "req-1")
    with pytest.raises(ProviderError, match="rayctl down"):
        provider.purge()

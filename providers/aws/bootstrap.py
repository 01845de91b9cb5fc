"""Bootstrap: find or create what instances need before launch (subnets, security group, key
pair, head IAM profile, AMIs), idempotently, and `purge` of what it created (tagged).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from providers.aws.clients import AWSClients
from providers.aws.config import AWSNodeConfig, AWSProviderConfig, ResolvedResources
from providers.aws.errors import Retrier, error_code
from providers.aws.iam import BOOTSTRAP_TAG, delete_head_profile, ensure_head_profile
from providers.base import TAG_CLUSTER, ConfigError, ProviderError

SSH_WARNING = (
    "SSH ingress not opened: provider.ssh_cidr is not set, so nothing outside the VPC can "
    "reach the nodes on port 22 and `rayctl up` cannot connect from here. Set provider.ssh_cidr "
    "to your address range (e.g. 203.0.113.7/32; 0.0.0.0/0 opens SSH to everyone)."
)


@dataclass(frozen=True, slots=True)
class BootstrapContext:
    clients: AWSClients
    call: Retrier
    cluster_name: str
    config: AWSProviderConfig
    node_configs: dict[str, AWSNodeConfig]
    key_dir: Path
    sleep: Callable[[float], None]


def _ownership_tags(cluster_name: str) -> list[dict[str, str]]:
    return [
        {"Key": TAG_CLUSTER, "Value": cluster_name},
        {"Key": BOOTSTRAP_TAG, "Value": cluster_name},
    ]


def _tag_spec(resource_type: str, cluster_name: str) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type, "Tags": _ownership_tags(cluster_name)}]


# --- network -----------------------------------------------------------------------------------


def _default_vpc(ctx: BootstrapContext) -> str:
    if ctx.config.vpc_id:
        return ctx.config.vpc_id
    filters = [{"Name": "isDefault", "Values": ["true"]}]
    vpcs = ctx.call(lambda: ctx.clients.ec2.describe_vpcs(Filters=filters))["Vpcs"]
    if not vpcs:
        raise ConfigError(
            f"region {ctx.config.region} has no default VPC: set provider.vpc_id "
            "or node_config.SubnetIds"
        )
    return str(vpcs[0]["VpcId"])


def _pick_zone_subnets(ctx: BootstrapContext, vpc_id: str) -> dict[str, str]:
    """One subnet per zone, in the configured zone order (all zones when none configured)."""
    filters = [{"Name": "vpc-id", "Values": [vpc_id]}]
    subnets = ctx.call(lambda: ctx.clients.ec2.describe_subnets(Filters=filters))["Subnets"]
    if not ctx.config.use_internal_ips:
        # We reach nodes by their public IP, so the subnet must hand one out.
        subnets = [s for s in subnets if s.get("MapPublicIpOnLaunch")]
    zones = ctx.config.zones() or sorted({s["AvailabilityZone"] for s in subnets})
    chosen: dict[str, str] = {}
    for zone in zones:
        in_zone = [s for s in subnets if s["AvailabilityZone"] == zone]
        if not in_zone:
            public = "" if ctx.config.use_internal_ips else " that maps public IPs"
            raise ConfigError(
                f"no subnet{public} in zone {zone} of VPC {vpc_id}: fix "
                "provider.availability_zone, set node_config.SubnetIds, or set use_internal_ips"
            )
        best = min(
            in_zone,
            key=lambda s: (
                not s.get("DefaultForAz"),
                -s.get("AvailableIpAddressCount", 0),
                s["SubnetId"],
            ),
        )
        chosen[zone] = str(best["SubnetId"])
    return chosen


def _explicit_subnets(ctx: BootstrapContext, subnet_ids: list[str]) -> tuple[str, dict[str, str]]:
    found = ctx.call(lambda: ctx.clients.ec2.describe_subnets(SubnetIds=subnet_ids))["Subnets"]
    by_id = {s["SubnetId"]: s for s in found}
    zones: dict[str, str] = {}
    for subnet_id in subnet_ids:  # keep the config's order: it is the order of preference
        zones.setdefault(by_id[subnet_id]["AvailabilityZone"], subnet_id)
    return str(by_id[subnet_ids[0]]["VpcId"]), zones


def resolve_subnets(ctx: BootstrapContext) -> tuple[str, dict[str, dict[str, str]]]:
    """(vpc id, node type -> zone -> subnet)."""
    per_type: dict[str, dict[str, str]] = {}
    vpc_id = ""
    default: dict[str, str] | None = None
    for node_type, node_config in ctx.node_configs.items():
        if node_config.SubnetIds:
            type_vpc, per_type[node_type] = _explicit_subnets(ctx, node_config.SubnetIds)
            vpc_id = vpc_id or type_vpc
            continue
        if default is None:
            vpc_id = _default_vpc(ctx)
            default = _pick_zone_subnets(ctx, vpc_id)
        per_type[node_type] = default
    return vpc_id, per_type


# --- security group ----------------------------------------------------------------------------


def _authorize(ctx: BootstrapContext, group_id: str, permission: dict[str, Any]) -> None:
    ec2 = ctx.clients.ec2
    try:
        ctx.call(
            lambda: ec2.authorize_security_group_ingress(
                GroupId=group_id, IpPermissions=[permission]
            )
        )
    except ProviderError as exc:
        if error_code(exc.__cause__) != "InvalidPermission.Duplicate":
            raise


def ensure_security_group(ctx: BootstrapContext, vpc_id: str) -> str:
    """The cluster's group in the VPC: all traffic inside it, SSH only from provider.ssh_cidr."""
    ec2 = ctx.clients.ec2
    name = ctx.config.security_group.GroupName or f"rayctl-{ctx.cluster_name}"
    filters = [{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [name]}]
    groups = ctx.call(lambda: ec2.describe_security_groups(Filters=filters))["SecurityGroups"]
    if groups:
        group_id = str(groups[0]["GroupId"])
    else:
        group_id = ctx.call(
            lambda: ec2.create_security_group(
                GroupName=name,
                Description=f"rayctl cluster {ctx.cluster_name}",
                VpcId=vpc_id,
                TagSpecifications=_tag_spec("security-group", ctx.cluster_name),
            )
        )["GroupId"]
    existing = groups[0].get("IpPermissions", []) if groups else []
    wanted: list[dict[str, Any]] = [
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group_id}]}
    ]
    if ctx.config.ssh_cidr:
        wanted.append(
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": ctx.config.ssh_cidr, "Description": "rayctl SSH"}],
            }
        )
    wanted.extend(ctx.config.security_group.IpPermissions)
    for permission in wanted:
        if not _has_permission(existing, permission):
            _authorize(ctx, group_id, permission)
    return group_id


def _has_permission(existing: list[dict[str, Any]], wanted: dict[str, Any]) -> bool:
    """Whether an equal rule (protocol, ports and every source) is already on the group."""

    def sources(rule: dict[str, Any]) -> set[str]:
        return {r["CidrIp"] for r in rule.get("IpRanges", [])} | {
            g["GroupId"] for g in rule.get("UserIdGroupPairs", [])
        }

    key = (str(wanted["IpProtocol"]), wanted.get("FromPort"), wanted.get("ToPort"))
    return any(
        (str(rule["IpProtocol"]), rule.get("FromPort"), rule.get("ToPort")) == key
        and sources(wanted) <= sources(rule)
        for rule in existing
    )


# --- key pair ----------------------------------------------------------------------------------


def key_name(cluster_name: str, region: str) -> str:
    return re.sub(r"[^\w.-]", "-", f"rayctl-{cluster_name}-{region}")


def ensure_key_pair(ctx: BootstrapContext) -> tuple[str, str]:
    """(key name, local private key path); the key is created and saved 0600 if missing."""
    ec2 = ctx.clients.ec2
    name = key_name(ctx.cluster_name, ctx.config.region)
    path = ctx.key_dir / f"{name}.pem"
    filters = [{"Name": "key-name", "Values": [name]}]
    if ctx.call(lambda: ec2.describe_key_pairs(Filters=filters))["KeyPairs"]:
        if path.exists():
            return name, str(path)
        raise ConfigError(
            f"EC2 key pair {name} exists but its private key {path} is not on this machine: "
            f"copy the key there, or delete the key pair (aws ec2 delete-key-pair --key-name "
            f"{name} --region {ctx.config.region}) so bootstrap creates a new one"
        )
    created = ctx.call(
        lambda: ec2.create_key_pair(
            KeyName=name, TagSpecifications=_tag_spec("key-pair", ctx.cluster_name)
        )
    )
    ctx.key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 from the start: never a moment where another user could read the key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(created["KeyMaterial"])
    os.chmod(path, 0o600)
    return name, str(path)


# --- AMI ---------------------------------------------------------------------------------------


def resolve_image(ctx: BootstrapContext, node_config: AWSNodeConfig) -> str:
    """node_config.ImageId, else the newest image matching provider.image_name/image_owner for
    the architecture of the type's first instance type."""
    if node_config.ImageId:
        return node_config.ImageId
    ec2 = ctx.clients.ec2
    instance_type = node_config.instance_types()[0]
    info = ctx.call(lambda: ec2.describe_instance_types(InstanceTypes=[instance_type]))
    archs = info["InstanceTypes"][0]["ProcessorInfo"]["SupportedArchitectures"]
    arch = "arm64" if "arm64" in archs else "x86_64"
    pattern = ctx.config.image_name.format(arch="arm64" if arch == "arm64" else "amd64")
    filters = [{"Name": "name", "Values": [pattern]}, {"Name": "architecture", "Values": [arch]}]
    images = ctx.call(
        lambda: ec2.describe_images(Owners=[ctx.config.image_owner], Filters=filters)
    )["Images"]
    if not images:
        raise ConfigError(
            f"no AMI named {pattern!r} owned by {ctx.config.image_owner} in "
            f"{ctx.config.region}: set node_config.ImageId or provider.image_name"
        )
    return str(max(images, key=lambda image: image.get("CreationDate", ""))["ImageId"])


# --- the whole bootstrap -----------------------------------------------------------------------


def bootstrap(ctx: BootstrapContext) -> tuple[ResolvedResources, list[str]]:
    """Find or create everything; returns what was resolved and warnings for the user."""
    warnings: list[str] = []
    vpc_id, subnets = resolve_subnets(ctx)
    configs = ctx.node_configs.values()
    group_ids: list[str] = []
    if not all(c.SecurityGroupIds for c in configs):
        group_ids = [ensure_security_group(ctx, vpc_id)]
        if not ctx.config.ssh_cidr:
            warnings.append(SSH_WARNING)
    name, key_path = ("", "")
    if not all(c.KeyName for c in configs):
        name, key_path = ensure_key_pair(ctx)
    profile_arn = ""
    if not all(c.IamInstanceProfile for c in configs):
        profile_arn = ensure_head_profile(ctx.clients.iam, ctx.call, ctx.cluster_name)
    images = {node_type: resolve_image(ctx, c) for node_type, c in ctx.node_configs.items()}
    resolved = ResolvedResources(
        vpc_id=vpc_id,
        subnets=subnets,
        security_group_ids=group_ids,
        key_name=name,
        ssh_private_key=key_path,
        head_instance_profile_arn=profile_arn,
        image_ids=images,
    )
    return resolved, warnings


def _delete_group_when_free(ctx: BootstrapContext, group_id: str, attempts: int = 30) -> None:
    """Instances that are still shutting down hold the group (DependencyViolation) for up to
    a minute or two after terminate: wait for them, boundedly."""
    for attempt in range(attempts):
        try:
            ctx.call(lambda: ctx.clients.ec2.delete_security_group(GroupId=group_id))
            return
        except ProviderError as exc:
            if error_code(exc.__cause__) != "DependencyViolation" or attempt == attempts - 1:
                raise ProviderError(
                    f"cannot delete security group {group_id}: {exc} (are instances of the "
                    "cluster still shutting down? run `rayctl down` first)"
                ) from exc
            ctx.sleep(5.0)


def purge(ctx: BootstrapContext) -> list[str]:
    """Delete the security group, key pair (and its local file) and head IAM role that bootstrap
    created: only resources carrying bootstrap's tag for this cluster. Returns what was deleted."""
    ec2 = ctx.clients.ec2
    owned = [{"Name": f"tag:{BOOTSTRAP_TAG}", "Values": [ctx.cluster_name]}]
    deleted: list[str] = []
    for group in ctx.call(lambda: ec2.describe_security_groups(Filters=owned))["SecurityGroups"]:
        _delete_group_when_free(ctx, group["GroupId"])
        deleted.append(f"security group {group['GroupId']}")
    for key in ctx.call(lambda: ec2.describe_key_pairs(Filters=owned))["KeyPairs"]:
        ctx.call(partial(ec2.delete_key_pair, KeyName=key["KeyName"]))
        (ctx.key_dir / f"{key['KeyName']}.pem").unlink(missing_ok=True)
        deleted.append(f"key pair {key['KeyName']}")
    if delete_head_profile(ctx.clients.iam, ctx.call, ctx.cluster_name):
        deleted.append("head IAM role and instance profile")
    return deleted

"""Launching: RunInstances arguments for one offering, idempotency per request id (our own tag
lookup first, then a ClientToken derived from request id + offering), and reuse of stopped
instances when cache_stopped_nodes is on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from providers.aws import instances
from providers.aws.config import AWSNodeConfig
from providers.aws.errors import Retrier
from providers.base import (
    NODE_KIND_WORKER,
    TAG_CLUSTER,
    TAG_LAUNCH_HASH,
    TAG_NODE_KIND,
    TAG_NODE_TYPE,
    TAG_REQUEST_ID,
    ConfigError,
    Instance,
    Market,
    Offering,
    ProviderError,
    ProviderState,
)


def client_token(request_id: str, offering: Offering) -> str:
    """EC2 rejects a reused token with other parameters (IdempotentParameterMismatch), so the
    offering is part of it: a failover to the next offering is a new, legitimate launch."""
    return hashlib.sha256(f"{request_id}|{offering.key()}".encode()).hexdigest()[:64]


def launch_hash(node_config: AWSNodeConfig) -> str:
    """Default launch-config hash when the caller passes none: the node_config as written."""
    text = json.dumps(node_config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Everything one RunInstances call needs, resolved."""

    node_type: str
    node_config: AWSNodeConfig
    offering: Offering
    count: int
    request_id: str
    tags: dict[str, str]
    subnet_id: str
    security_group_ids: list[str]
    image_id: str
    key_name: str
    instance_profile: dict[str, str] | None
    all_or_nothing: bool = False


def run_instances_args(spec: LaunchSpec) -> dict[str, Any]:
    """RunInstances keyword arguments: node_config's pass-through keys plus ours."""
    node_config = spec.node_config
    tag_list = [{"Key": k, "Value": v} for k, v in spec.tags.items()]
    user_specs = [s for s in node_config.TagSpecifications if s.get("ResourceType") != "instance"]
    user_instance_tags = [
        t
        for s in node_config.TagSpecifications
        if s.get("ResourceType") == "instance"
        for t in s.get("Tags", [])
        if t["Key"] not in spec.tags
    ]
    args: dict[str, Any] = {
        **node_config.passthrough(),
        "InstanceType": spec.offering.instance_type,
        "ImageId": spec.image_id,
        # MinCount = MaxCount: EC2 launches all or fails with nothing, so a short offering
        # becomes a CapacityError the autoscaler fails over from, instead of a silent partial
        # launch (and moto, which launches MinCount, behaves like EC2 here).
        "MinCount": spec.count,
        "MaxCount": spec.count,
        "ClientToken": client_token(spec.request_id, spec.offering),
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tag_list + user_instance_tags},
            # Volumes carry the cluster tag so the head's policy allows them and leaks show.
            {
                "ResourceType": "volume",
                "Tags": [{"Key": TAG_CLUSTER, "Value": spec.tags[TAG_CLUSTER]}],
            },
            *[s for s in user_specs if s.get("ResourceType") != "volume"],
        ],
    }
    if spec.subnet_id:
        args["SubnetId"] = spec.subnet_id
    elif spec.offering.zone:
        args["Placement"] = {**args.get("Placement", {}), "AvailabilityZone": spec.offering.zone}
    if spec.security_group_ids:
        args["SecurityGroupIds"] = spec.security_group_ids
    if spec.key_name:
        args["KeyName"] = spec.key_name
    if spec.instance_profile:
        args["IamInstanceProfile"] = spec.instance_profile
    if node_config.UserData:
        args["UserData"] = node_config.UserData
    if spec.tags.get(TAG_NODE_KIND) == NODE_KIND_WORKER:
        # A worker that lost its head powers itself off (end_machine_command); terminate makes
        # that end the billing too. Ours wins over node_config: a stopped orphan still bills
        # its volumes and nobody is left to delete it. StopInstances (cache_stopped_nodes) is
        # not affected: this applies only to a shutdown from inside the instance.
        args["InstanceInitiatedShutdownBehavior"] = "terminate"
    if spec.offering.market is Market.SPOT:
        options = dict(node_config.InstanceMarketOptions or {})
        args["InstanceMarketOptions"] = {**options, "MarketType": "spot"}
    return args


def already_launched(ec2: Any, call: Retrier, cluster_name: str, request_id: str) -> list[Instance]:
    """Instances an earlier attempt of this request launched (moto ignores ClientToken, and a
    retry after a lost reply must never launch twice)."""
    filters = instances.cluster_filters(cluster_name, **{TAG_REQUEST_ID: request_id})
    return instances.describe(ec2, call, filters)


def reuse_stopped(
    ec2: Any, call: Retrier, cluster_name: str, spec: LaunchSpec, batch_size: int
) -> list[Instance]:
    """Start up to `count` stopped instances of the same type, offering and launch hash,
    retagged with the new request id."""
    if spec.offering.market is Market.SPOT:
        return []  # a one-time spot instance cannot be stopped, so none is cached
    filters: list[dict[str, Any]] = [
        {"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster_name]},
        {"Name": f"tag:{TAG_NODE_TYPE}", "Values": [spec.node_type]},
        {"Name": f"tag:{TAG_LAUNCH_HASH}", "Values": [spec.tags[TAG_LAUNCH_HASH]]},
        {"Name": "instance-state-name", "Values": ["stopped"]},
        {"Name": "instance-type", "Values": [spec.offering.instance_type]},
    ]
    if spec.offering.zone:
        filters.append({"Name": "availability-zone", "Values": [spec.offering.zone]})
    stopped = sorted(instances.describe(ec2, call, filters), key=lambda i: i.id)[: spec.count]
    if not stopped:
        return []
    ids = [i.id for i in stopped]
    # Tag first: if start fails halfway, a retry of this request finds them by request id.
    instances.create_tags(ec2, call, ids, spec.tags, batch_size)
    instances.start(ec2, call, ids, batch_size)
    return [
        dataclasses.replace(i, state=ProviderState.PENDING, tags={**i.tags, **spec.tags})
        for i in stopped
    ]


def launch(
    ec2: Any, call: Retrier, cluster_name: str, spec: LaunchSpec, *, reuse: bool, batch_size: int
) -> list[Instance]:
    """Launch per the spec; see NodeProvider.launch for the contract."""
    existing = already_launched(ec2, call, cluster_name, spec.request_id)
    if existing:
        return existing
    reused = reuse_stopped(ec2, call, cluster_name, spec, batch_size) if reuse else []
    remaining = spec.count - len(reused)
    if remaining <= 0:
        return reused
    args = run_instances_args(dataclasses.replace(spec, count=remaining))
    try:
        response = call(lambda: ec2.run_instances(**args), spec.offering)
    except ProviderError:
        if not reused:
            raise
        if not spec.all_or_nothing:
            return reused  # fewer than asked is allowed; the next request meets the error
        # Leave nothing behind: the restarted cached nodes go back to the cache.
        instances.stop(ec2, call, [i.id for i in reused], batch_size)
        raise
    return reused + [instances.to_instance(raw) for raw in response["Instances"]]


def subnet_for(subnets: dict[str, str], node_type: str, offering: Offering) -> str:
    """The subnet of the offering's zone ("" zone: the first, most preferred)."""
    if not subnets:
        return ""
    if not offering.zone:
        return next(iter(subnets.values()))
    if offering.zone not in subnets:
        raise ConfigError(
            f"node type {node_type} has no subnet in zone {offering.zone} "
            f"(it has {', '.join(subnets)}): check provider.availability_zone and SubnetIds"
        )
    return subnets[offering.zone]

"""Instances as EC2 reports them: listing by tag with pagination, state mapping, and
terminate / stop / start in batches (an EC2 call takes at most 1,000 ids).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from typing import Any

from providers.aws.errors import Retrier, error_code, missing_instance_ids
from providers.base import (
    TAG_CLUSTER,
    TAG_NODE_TYPE,
    Instance,
    InstanceNotFound,
    Market,
    Offering,
    ProviderState,
)

MAX_IDS_PER_CALL = 1000

STATES = {
    "pending": ProviderState.PENDING,
    "running": ProviderState.RUNNING,
    "stopping": ProviderState.STOPPING,
    "stopped": ProviderState.STOPPED,
    "shutting-down": ProviderState.TERMINATED,  # irreversibly on its way out
    "terminated": ProviderState.TERMINATED,
}
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")


def to_instance(raw: dict[str, Any]) -> Instance:
    """The domain value of one DescribeInstances / RunInstances entry."""
    tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
    market = Market.SPOT if raw.get("InstanceLifecycle") == "spot" else Market.ON_DEMAND
    zone = raw.get("Placement", {}).get("AvailabilityZone", "")
    launched = raw.get("LaunchTime")
    return Instance(
        id=raw["InstanceId"],
        node_type=tags.get(TAG_NODE_TYPE, ""),
        offering=Offering(raw["InstanceType"], zone, market),
        state=STATES.get(raw["State"]["Name"], ProviderState.PENDING),
        internal_ip=raw.get("PrivateIpAddress", "") or "",
        external_ip=raw.get("PublicIpAddress", "") or "",
        tags=tags,
        launched_at=launched.timestamp() if launched is not None else 0.0,
    )


def cluster_filters(cluster_name: str, **tags: str) -> list[dict[str, Any]]:
    """Filters for this cluster's live instances, narrowed by further tag=value pairs."""
    filters = [
        {"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster_name]},
        {"Name": "instance-state-name", "Values": LIVE_STATES},
    ]
    filters += [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]
    return filters


def describe(
    ec2: Any, call: Retrier, filters: list[dict[str, Any]], page_size: int = MAX_IDS_PER_CALL
) -> list[Instance]:
    """Every instance matching the filters, following pagination (one logical call)."""
    page_size = max(5, min(page_size, MAX_IDS_PER_CALL))  # EC2 accepts MaxResults 5..1000

    def fetch() -> list[dict[str, Any]]:
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=filters, PaginationConfig={"PageSize": page_size}
        )
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    return [to_instance(raw) for raw in call(fetch)]


def _batches(ids: Sequence[str], size: int) -> list[list[str]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def _act_ignoring_unknown(call: Retrier, action: Any, ids: list[str]) -> None:
    """Apply a TerminateInstances/StopInstances-like call; ids EC2 does not know are dropped
    and the call repeated for the rest (EC2 rejects the whole call for one unknown id)."""
    remaining = [i for i in ids if _INSTANCE_ID.match(i)]  # malformed ids cannot exist
    while remaining:
        try:
            call(partial(action, InstanceIds=remaining))
            return
        except InstanceNotFound as exc:
            missing = set(missing_instance_ids(exc.__cause__))
            if error_code(exc.__cause__) != "InvalidInstanceID.NotFound" or not missing:
                raise
            remaining = [i for i in remaining if i not in missing]


def terminate(ec2: Any, call: Retrier, ids: Sequence[str], batch_size: int) -> None:
    for batch in _batches(ids, batch_size):
        _act_ignoring_unknown(call, ec2.terminate_instances, batch)


def stop(ec2: Any, call: Retrier, ids: Sequence[str], batch_size: int) -> None:
    for batch in _batches(ids, batch_size):
        _act_ignoring_unknown(call, ec2.stop_instances, batch)


def start(ec2: Any, call: Retrier, ids: Sequence[str], batch_size: int) -> None:
    for batch in _batches(ids, batch_size):
        call(partial(ec2.start_instances, InstanceIds=batch))


def create_tags(
    ec2: Any, call: Retrier, ids: Sequence[str], tags: dict[str, str], batch_size: int
) -> None:
    """One CreateTags per batch of ids, however many tags (tag writes are batched)."""
    pairs = [{"Key": k, "Value": v} for k, v in tags.items()]
    for batch in _batches(ids, batch_size):
        call(partial(ec2.create_tags, Resources=batch, Tags=pairs))

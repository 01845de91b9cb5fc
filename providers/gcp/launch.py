"""Launching GCE instances: the request body and the idempotent insert / bulkInsert calls.

Idempotency has three layers: instances already labelled with the request id are returned;
GCE `requestId` is a UUID derived from our request id and the offering, so a retried call
returns the first operation; instance names are derived from them too, so a replay after the
requestId window hits `alreadyExists` instead of creating a twin.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from providers.base import (
    NODE_KIND_HEAD,
    TAG_CLUSTER,
    TAG_NODE_KIND,
    TAG_NODE_TYPE,
    TAG_REQUEST_ID,
    ConfigError,
    Instance,
    Market,
    Offering,
)
from providers.gcp.bootstrap import network_url, subnetwork_url
from providers.gcp.clients import CALL_TIMEOUT_S, NO_RETRY, ComputeClients, OperationWaiter
from providers.gcp.config import (
    DEFAULT_DISK_SIZE_GB,
    DEFAULT_SOURCE_IMAGE,
    GCPNodeConfig,
    GCPProviderConfig,
)
from providers.gcp.errors import OperationFailed, gcp_errors
from providers.gcp.instances import InstanceRegistry
from providers.gcp.labels import (
    SSH_KEYS_METADATA_KEY,
    TAGS_METADATA_KEY,
    instance_names,
    labels_for,
    network_tag,
    request_uuid,
    tags_metadata,
)

log = structlog.get_logger("providers.gcp")

# Attempts of one request after GCE replayed an operation whose instances are gone.
MAX_REPLAYS = 8
# Machine families whose GPUs are built in: they cannot live-migrate either.
GPU_FAMILIES = ("a2-", "a3-", "g2-")


@dataclass(frozen=True, slots=True)
class LaunchContext:
    """What every body needs besides the node type: the provider section, resolved."""

    cluster_name: str
    config: GCPProviderConfig
    ssh_public_key: str | None


def instance_body(ctx: LaunchContext, node_config: GCPNodeConfig, offering: Offering,
                  tags: Mapping[str, str], *, properties: bool = False) -> dict[str, Any]:
    """The JSON body of an Instance (or, with `properties`, of bulkInsert's InstanceProperties,
    which takes bare machine and accelerator type names instead of zonal URLs)."""
    zone, project = offering.zone, ctx.config.project_id
    body = node_config.passthrough()
    body["machineType"] = (offering.instance_type if properties
                           else f"zones/{zone}/machineTypes/{offering.instance_type}")
    body["disks"] = node_config.disks or [_default_boot_disk()]
    if node_config.guestAccelerators:
        body["guestAccelerators"] = [{
            "acceleratorType": a.short_type if properties
            else f"projects/{project}/zones/{zone}/acceleratorTypes/{a.short_type}",
            "acceleratorCount": a.acceleratorCount,
        } for a in node_config.guestAccelerators]
    body["scheduling"] = _scheduling(node_config, offering)
    body["labels"] = {**node_config.labels, **labels_for(tags)}
    body["metadata"] = {"items": _metadata(ctx, node_config, tags)}
    existing_tags = list(body.get("tags", {}).get("items", []))
    body["tags"] = {"items": sorted({*existing_tags, network_tag(ctx.cluster_name)})}
    body.setdefault("networkInterfaces", [_network_interface(ctx.config)])
    account = ctx.config.service_account
    if tags.get(TAG_NODE_KIND) == NODE_KIND_HEAD and account and account.email:
        body.setdefault("serviceAccounts", [{"email": account.email, "scopes": account.scopes}])
    return body


def _default_boot_disk() -> dict[str, Any]:
    return {"boot": True, "autoDelete": True, "type": "PERSISTENT", "initializeParams": {
        "sourceImage": DEFAULT_SOURCE_IMAGE, "diskSizeGb": str(DEFAULT_DISK_SIZE_GB)}}


def _scheduling(node_config: GCPNodeConfig, offering: Offering) -> dict[str, Any]:
    scheduling = node_config.scheduling.model_dump(exclude_none=True)
    has_gpu = bool(node_config.guestAccelerators) or offering.instance_type.startswith(
        GPU_FAMILIES)
    if has_gpu:
        scheduling["onHostMaintenance"] = "TERMINATE"  # GPU VMs cannot live-migrate
    if offering.market == Market.SPOT:
        # Spot VMs must not auto-restart; a preempted one is deleted and replaced by rayctl.
        scheduling.update(provisioningModel="SPOT", onHostMaintenance="TERMINATE",
                          automaticRestart=False)
        scheduling.setdefault("instanceTerminationAction", "DELETE")
    else:
        for key in ("provisioningModel", "preemptible", "instanceTerminationAction"):
            scheduling.pop(key, None)
    return scheduling


def _metadata(ctx: LaunchContext, node_config: GCPNodeConfig,
              tags: Mapping[str, str]) -> list[dict[str, str]]:
    items = dict(node_config.metadata)
    items[TAGS_METADATA_KEY] = tags_metadata(tags)
    if ctx.ssh_public_key:
        # Instance metadata, not project-wide: other VMs of the project do not trust the key.
        items[SSH_KEYS_METADATA_KEY] = f"{ctx.config.ssh_user}:{ctx.ssh_public_key}"
    return [{"key": k, "value": v} for k, v in items.items()]


def _network_interface(config: GCPProviderConfig) -> dict[str, Any]:
    nic: dict[str, Any] = {"network": network_url(config)}
    subnetwork = subnetwork_url(config)
    if subnetwork:
        nic["subnetwork"] = subnetwork
    if not config.use_internal_ips:
        nic["accessConfigs"] = [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]
    return nic


def parse_message(message_type: Any, body: Mapping[str, Any], what: str) -> Any:
    """Check a body against the API schema; an unknown or mistyped field is a ConfigError."""
    from google.protobuf.json_format import ParseError

    try:
        return message_type.from_json(json.dumps(body), ignore_unknown_fields=False)
    except ParseError as exc:
        raise ConfigError(f"{what}: {exc}".split("\n")[0]) from exc


class Launcher:
    """Starts instances of one cluster."""

    def __init__(self, ctx: LaunchContext, clients: ComputeClients, waiter: OperationWaiter,
                 registry: InstanceRegistry) -> None:
        self._ctx = ctx
        self._clients = clients
        self._waiter = waiter
        self._registry = registry
        # GCE answers a reused requestId with the first operation, even a failed one or one
        # whose instances were deleted since; such an attempt is followed by a fresh requestId.
        self._attempts: dict[str, int] = {}

    def launch(self, node_type: str, node_config: GCPNodeConfig, offering: Offering, count: int,
               request_id: str, tags: Mapping[str, str], all_or_nothing: bool) -> list[Instance]:
        found = self._registry.by_request(request_id)
        if found:
            return found
        all_tags = {**tags, TAG_CLUSTER: self._ctx.cluster_name, TAG_NODE_TYPE: node_type,
                    TAG_REQUEST_ID: request_id}
        attempt_key = f"{request_id}/{offering.key()}"
        what = f"launch {count} x {offering.key()} for node type {node_type}"
        for _ in range(MAX_REPLAYS):
            attempt = self._attempts.get(attempt_key, 0)
            names = instance_names(self._ctx.cluster_name, f"{request_id}/{attempt}", offering,
                                   count)
            with gcp_errors(what, offering):
                try:
                    self._start(node_type, node_config, offering, all_tags, names,
                                request_uuid(f"launch/{attempt_key}/{attempt}"), all_or_nothing)
                except OperationFailed:
                    self._attempts[attempt_key] = attempt + 1
                    raise
            found = self._registry.collect(offering.zone, names, request_id)
            if found:
                log.info("gcp launched", node_type=node_type, offering=offering.key(),
                         request_id=request_id, asked=count, got=len(found),
                         instances=[i.id for i in found])
                return found
            # The operation succeeded yet none of its instances exist: GCE replayed an earlier
            # operation of this request whose instances were deleted since. Launch afresh.
            self._attempts[attempt_key] = attempt + 1
        return []

    def _start(self, node_type: str, node_config: GCPNodeConfig, offering: Offering,
               tags: Mapping[str, str], names: list[str], api_request_id: str,
               all_or_nothing: bool) -> None:
        if len(names) == 1:
            self._insert(node_type, node_config, offering, tags, names[0], api_request_id)
        else:
            self._bulk_insert(node_type, node_config, offering, tags, names, api_request_id,
                              all_or_nothing)

    def _insert(self, node_type: str, node_config: GCPNodeConfig, offering: Offering,
                tags: Mapping[str, str], name: str, api_request_id: str) -> None:
        from google.api_core import exceptions as gexc
        from google.cloud import compute_v1

        body = instance_body(self._ctx, node_config, offering, tags)
        body["name"] = name
        resource = parse_message(compute_v1.Instance, body, f"node_config of {node_type}")
        request = compute_v1.InsertInstanceRequest(
            project=self._ctx.config.project_id, zone=offering.zone,
            instance_resource=resource, request_id=api_request_id)
        try:
            op = self._clients.instances.insert_unary(request=request, timeout=CALL_TIMEOUT_S,
                                                retry=NO_RETRY)
        except gexc.Conflict:
            return  # the deterministic name exists: an earlier attempt of this request made it
        self._waiter.zone(op, offering.zone)

    def _bulk_insert(self, node_type: str, node_config: GCPNodeConfig, offering: Offering,
                     tags: Mapping[str, str], names: list[str], api_request_id: str,
                     all_or_nothing: bool) -> None:
        from google.cloud import compute_v1

        body = {
            "count": str(len(names)),
            # minCount = count makes GCE create all or none (placement groups need that).
            "minCount": str(len(names) if all_or_nothing else 1),
            "instanceProperties": instance_body(self._ctx, node_config, offering, tags,
                                                properties=True),
            "perInstanceProperties": {n: {"name": n} for n in names},
        }
        resource = parse_message(compute_v1.BulkInsertInstanceResource, body,
                                 f"node_config of {node_type}")
        request = compute_v1.BulkInsertInstanceRequest(
            project=self._ctx.config.project_id, zone=offering.zone,
            bulk_insert_instance_resource_resource=resource, request_id=api_request_id)
        op = self._clients.instances.bulk_insert_unary(request=request, timeout=CALL_TIMEOUT_S,
                                                 retry=NO_RETRY)
        self._waiter.zone(op, offering.zone)

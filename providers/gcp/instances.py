"""Listing and deleting a cluster's GCE instances.

One `aggregatedList` call with a label filter per pass. GCE statuses map onto ProviderState;
a spot VM that GCE preempted (TERMINATED) is reported as gone so the autoscaler replaces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import structlog

from providers.base import (
    TAG_CLUSTER,
    TAG_NODE_TYPE,
    TAG_REQUEST_ID,
    Instance,
    InstanceNotFound,
    Market,
    Offering,
    ProviderError,
    ProviderState,
)
from providers.gcp.clients import CALL_TIMEOUT_S, NO_RETRY, ComputeClients, OperationWaiter
from providers.gcp.errors import gcp_errors
from providers.gcp.labels import label_filter, label_key, label_value, request_uuid, tags_of

STATES = {
    "PROVISIONING": ProviderState.PENDING,
    "STAGING": ProviderState.PENDING,
    "REPAIRING": ProviderState.PENDING,
    "RUNNING": ProviderState.RUNNING,
    "STOPPING": ProviderState.STOPPING,
    "SUSPENDING": ProviderState.STOPPING,
    "SUSPENDED": ProviderState.STOPPED,
    "TERMINATED": ProviderState.STOPPED,  # GCE's word for a stopped VM
}
MAX_PARALLEL_DELETES = 16
log = structlog.get_logger("providers.gcp")


def is_spot(gce: Any) -> bool:
    return gce.scheduling.provisioning_model == "SPOT" or bool(gce.scheduling.preemptible)


def to_instance(gce: Any, zone: str) -> Instance | None:
    """A compute_v1 Instance as our Instance; None when it is gone for our purposes.

    A TERMINATED spot VM was preempted (rayctl never stops its nodes): it will not come back,
    and GCE deletes it (instanceTerminationAction DELETE), so it counts as gone already.
    """
    status = gce.status
    if status == "TERMINATED" and is_spot(gce):
        return None
    tags = tags_of(gce)
    nic = gce.network_interfaces[0] if gce.network_interfaces else None
    nat = nic.access_configs[0].nat_i_p if nic and nic.access_configs else ""
    return Instance(
        id=gce.name,
        node_type=tags.get(TAG_NODE_TYPE, ""),
        offering=Offering(
            instance_type=gce.machine_type.rsplit("/", 1)[-1],
            zone=zone.rsplit("/", 1)[-1],
            market=Market.SPOT if is_spot(gce) else Market.ON_DEMAND,
        ),
        state=STATES.get(status, ProviderState.PENDING),
        internal_ip=nic.network_i_p if nic else "",
        external_ip=nat,
        tags=tags,
        launched_at=_timestamp(gce.creation_timestamp),
    )


def _timestamp(rfc3339: str) -> float:
    try:
        return datetime.fromisoformat(rfc3339).timestamp()
    except ValueError:
        return 0.0


class InstanceRegistry:
    """Finds the cluster's instances and deletes them; remembers which zone holds which name."""

    def __init__(self, cluster_name: str, project: str, clients: ComputeClients,
                 waiter: OperationWaiter) -> None:
        self._cluster = cluster_name
        self._project = project
        self._clients = clients
        self._waiter = waiter
        self._zones: dict[str, str] = {}

    def list_cluster(self) -> list[Instance]:
        found = self._aggregated({TAG_CLUSTER: self._cluster})
        return [i for i in found if i.tags.get(TAG_CLUSTER) == self._cluster]

    def by_request(self, request_id: str) -> list[Instance]:
        """Instances launched for `request_id` (exact tag compare after the label filter)."""
        found = self._aggregated({TAG_CLUSTER: self._cluster, TAG_REQUEST_ID: request_id})
        return [i for i in found if i.tags.get(TAG_REQUEST_ID) == request_id]

    def collect(self, zone: str, names: Sequence[str], request_id: str) -> list[Instance]:
        """The instances of a finished launch: one filtered list, then `get` for any name the
        list does not show yet (list results may lag; get is consistent)."""
        listed = {i.id: i for i in self._zone_list(zone, request_id)}
        for name in names:
            if name not in listed:
                found = self._get(zone, name)
                if found is not None:
                    listed[name] = found
        return [listed[n] for n in names if n in listed]

    def delete(self, instance_ids: Sequence[str]) -> None:
        """Delete in parallel and wait for each operation; unknown ids are already gone."""
        if not instance_ids:
            return
        if any(i not in self._zones for i in instance_ids):
            self.list_cluster()  # learn the zones of ids this process has not seen
        targets = [(i, self._zones[i]) for i in instance_ids if i in self._zones]
        if not targets:
            return
        log.info("gcp deleting", instances=[name for name, _ in targets])
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_DELETES, len(targets))) as pool:
            results = list(pool.map(lambda t: self._delete_one(*t), targets))
        errors = [e for e in results if e is not None]
        if errors:
            raise errors[0]

    def _delete_one(self, name: str, zone: str) -> ProviderError | None:
        from google.cloud import compute_v1

        request = compute_v1.DeleteInstanceRequest(
            project=self._project, zone=zone, instance=name,
            request_id=request_uuid(f"delete/{zone}/{name}"))
        try:
            with gcp_errors(f"delete instance {name} in {zone}"):
                op = self._clients.instances.delete_unary(
                    request=request, timeout=CALL_TIMEOUT_S, retry=NO_RETRY)
                self._waiter.zone(op, zone)
        except InstanceNotFound:
            pass
        except ProviderError as exc:
            return exc
        self._zones.pop(name, None)
        return None

    def _aggregated(self, tags: dict[str, str]) -> list[Instance]:
        from google.cloud import compute_v1

        request = compute_v1.AggregatedListInstancesRequest(
            project=self._project, filter=self._filter(tags))
        instances: list[Instance] = []
        with gcp_errors("list instances"):
            pages = self._clients.instances.aggregated_list(
                request=request, timeout=CALL_TIMEOUT_S, retry=NO_RETRY)
            for scope, scoped in pages:
                zone = scope.rsplit("/", 1)[-1]
                instances += self._convert(scoped.instances, zone)
        return instances

    def _zone_list(self, zone: str, request_id: str) -> list[Instance]:
        from google.cloud import compute_v1

        request = compute_v1.ListInstancesRequest(
            project=self._project, zone=zone,
            filter=self._filter({TAG_CLUSTER: self._cluster, TAG_REQUEST_ID: request_id}))
        with gcp_errors(f"list instances in {zone}"):
            pages = self._clients.instances.list(request=request, timeout=CALL_TIMEOUT_S,
                                                 retry=NO_RETRY)
            return self._convert(list(pages), zone)

    def _get(self, zone: str, name: str) -> Instance | None:
        try:
            with gcp_errors(f"get instance {name}"):
                gce = self._clients.instances.get(project=self._project, zone=zone,
                                                  instance=name, timeout=CALL_TIMEOUT_S,
                                                  retry=NO_RETRY)
        except InstanceNotFound:
            return None
        converted = self._convert([gce], zone)
        return converted[0] if converted else None

    def _convert(self, gces: Sequence[Any], zone: str) -> list[Instance]:
        instances = []
        for gce in gces:
            self._zones[gce.name] = zone
            instance = to_instance(gce, zone)
            if instance is not None:
                instances.append(instance)
        return instances

    @staticmethod
    def _filter(tags: dict[str, str]) -> str:
        return label_filter({label_key(k): label_value(v) for k, v in tags.items()})

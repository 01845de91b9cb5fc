"""The GCS's state in Redis, owned here: the keys under `rayctl:<cluster_id>:`, how each record is
encoded, the KV namespaces other layers use, and the schema version. runtime/gcs/tables.py writes
through this module; the autoscaler (observe, monitor, status, sdk) reads through it.

Keys (prefix `cluster_prefix(cluster_id)`):
  schema_version   string: SCHEMA_VERSION, written by the first GCS of the cluster
  nodes            hash node_id  -> NodeInfo (protobuf bytes)
  actors           hash actor_id -> ActorInfo (protobuf bytes)
  placement_groups hash pg_id    -> PlacementGroupInfo (protobuf bytes)
  named_actors     hash "<namespace>/<name>" -> actor_id
  jobs             hash job_id   -> JSON JobRecord
  kv:<ns>          hash key      -> value (the internal KV; namespaces in KvNamespace)
  load             hash node_id  -> JSON [LoadEntry] (the demand)
  demand_changed   pub/sub channel: a debounced notice when demand changes
  node_changes     pub/sub channel: JSON {node_id, state, reason} when a node joins, drains or dies
  events           stream of {kind, message, time}
  autoscaler:*     the autoscaler's lifecycle store (autoscaler/lifecycle_store.py owns those)
  web:*            the dashboard's samples over time (autoscaler/web/series.py owns those)
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from runtime.protocol.common_pb2 import ActorInfo, NodeInfo, PlacementGroupInfo, ShapeCount
from runtime.protocol.states import NodeState, ShapeKind

# 1: the unversioned layout of protocol 1 (states as strings inside the protobuf records).
# 2: states as proto enums; NodeInfo.drain.
SCHEMA_VERSION = 2

EVENTS_MAX = 10_000  # the event stream is trimmed to about this many entries


def cluster_prefix(cluster_id: str) -> str:
    """What every Redis key of one cluster starts with."""
    return f"rayctl:{cluster_id}:"


class KvNamespace(enum.StrEnum):
    """The internal KV's namespaces that more than one layer uses."""

    AUTOSCALER = "autoscaler"  # a write here wakes the monitor (keyspace notices)
    AUTOSCALER_STATUS = "autoscaler_status"  # the monitor's status; writes wake nobody
    RUNTIME_ENV = "runtime_env"  # packaged working_dir / py_modules
    JOBS = "job_submission"  # submitted jobs' records (runtime/jobs/store.py owns the keys)
    JOB_LOGS = "job_logs"  # submitted jobs' output in chunks (runtime/jobs/store.py)


class KvKey(enum.StrEnum):
    RESOURCE_REQUESTS = "resource_requests"  # AUTOSCALER: JSON bundles (sdk.request_resources)
    LAUNCHABLE_NODE_TYPES = "launchable_node_types"  # AUTOSCALER: JSON {type: resources}
    STATUS = "status"  # AUTOSCALER_STATUS: the ClusterStatus JSON


class GcsKeys:
    """The Redis keys of one cluster's GCS state."""

    def __init__(self, cluster_id: str) -> None:
        self.prefix = cluster_prefix(cluster_id)
        self.schema_version = self.prefix + "schema_version"
        self.nodes = self.prefix + "nodes"
        self.actors = self.prefix + "actors"
        self.placement_groups = self.prefix + "placement_groups"
        self.named_actors = self.prefix + "named_actors"
        self.jobs = self.prefix + "jobs"
        self.load = self.prefix + "load"
        self.demand_changed = self.prefix + "demand_changed"
        self.node_changes = self.prefix + "node_changes"
        self.events = self.prefix + "events"

    def kv(self, namespace: str) -> str:
        return f"{self.prefix}kv:{namespace}"

    def tables(self) -> tuple[str, ...]:
        """The keys whose presence says a GCS has written this cluster's state."""
        return (self.nodes, self.actors, self.placement_groups, self.named_actors, self.jobs)


# --- the schema version -------------------------------------------------------------------


def schema_problem(found: bytes | str | None, has_tables: bool, cluster_id: str) -> str | None:
    """Why a GCS must not use this cluster's state (one line), or None: a fresh cluster (then
    stamp SCHEMA_VERSION) or one written with this version."""
    if found is None and not has_tables:
        return None
    text = found.decode() if isinstance(found, bytes) else found
    if text == str(SCHEMA_VERSION):
        return None
    written = "no schema version (an older rayctl)" if text is None else f"schema version {text}"
    return (
        f"Redis holds the state of cluster {cluster_id} written with {written}; this rayctl "
        f"reads schema version {SCHEMA_VERSION}: stop that cluster with the rayctl that started "
        "it (`rayctl stop`), or start a new session (`rayctl start --head` makes a new cluster)"
    )


# --- records --------------------------------------------------------------------------------


def encode_record(record: NodeInfo | ActorInfo | PlacementGroupInfo) -> bytes:
    return record.SerializeToString()


def decode_node(raw: bytes | str) -> NodeInfo:
    info = NodeInfo()
    info.ParseFromString(_binary(raw))
    return info


def decode_actor(raw: bytes | str) -> ActorInfo:
    actor = ActorInfo()
    actor.ParseFromString(_binary(raw))
    return actor


def decode_placement_group(raw: bytes | str) -> PlacementGroupInfo:
    pg = PlacementGroupInfo()
    pg.ParseFromString(_binary(raw))
    return pg


def _binary(raw: bytes | str) -> bytes:
    if isinstance(raw, str):
        raise TypeError("protobuf records are bytes: read them with a Redis client made "
                        "without decode_responses=True")
    return raw


@dataclass(frozen=True, slots=True)
class LoadEntry:
    """One queued shape of a node's load: `count` tasks (or actors) want it."""

    shape: dict[str, float]
    count: int
    infeasible: bool  # no node of the cluster can ever fit it
    kind: ShapeKind


def encode_load(shapes: Iterable[ShapeCount]) -> str:
    return json.dumps([
        {"shape": dict(s.shape), "count": s.count, "infeasible": s.infeasible,
         "kind": ShapeKind.from_wire(s.kind).value}
        for s in shapes
    ])


def decode_load(raw: bytes | str) -> list[LoadEntry]:
    return [LoadEntry(e["shape"], e["count"], e["infeasible"], _SHAPE_KINDS[e["kind"]])
            for e in json.loads(raw)]


_SHAPE_KINDS = {kind.value: kind for kind in ShapeKind}  # faster than ShapeKind(value)


class JobRecord(TypedDict):
    driver_address: str
    driver_pid: int
    namespace: str
    start: float
    end: float | None  # None while the driver runs
    submission_id: NotRequired[str]  # the submitted job whose entrypoint it is (absent: none)


def encode_job(job: JobRecord) -> str:
    return json.dumps(job)


def decode_job(raw: bytes | str) -> JobRecord:
    record: JobRecord = json.loads(raw)
    return record


def encode_launchable(types: Mapping[str, Mapping[str, float]]) -> str:
    """KvKey.LAUNCHABLE_NODE_TYPES: what the autoscaler may launch, {node type: resources}."""
    return json.dumps({name: dict(res) for name, res in types.items()}, sort_keys=True)


def decode_launchable(raw: bytes | str | None) -> dict[str, dict[str, float]]:
    return json.loads(raw) if raw else {}


def encode_node_change(info: NodeInfo) -> str:
    """The `node_changes` message for a node that joined, drains or died."""
    state = NodeState.from_wire(info.state)
    return json.dumps({"node_id": info.node_id, "state": state.value, "reason": info.death_reason})


def event_fields(kind: str, message: str, now: float) -> Mapping[str, Any]:
    """One entry of the `events` stream."""
    return {"kind": kind, "message": message, "time": str(now)}

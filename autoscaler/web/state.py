"""The cluster's state as rows, for `rayctl list` and `/api/state/<kind>` (Ray's `ray list`):
nodes, actors, placement groups and drivers from the GCS's tables in Redis (through the
runtime's schema, one pipeline per read); tasks from the GCS's task events; objects from each
live node's store."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import redis

from runtime.gcs import schema
from runtime.gcs.schema import GcsKeys
from runtime.protocol import gcs_pb2, raylet_pb2, raylet_pb2_grpc
from runtime.protocol.states import (
    ActorState,
    NodeState,
    PlacementGroupState,
    PlacementStrategy,
    TaskStatus,
    TaskType,
)

NODE_CALL_TIMEOUT_S = 3.0
MAX_LISTED = 10_000  # rows one listing returns at most


class StateKind(enum.StrEnum):
    NODES = "nodes"
    ACTORS = "actors"
    PLACEMENT_GROUPS = "placement-groups"
    JOBS = "jobs"  # drivers that called init(); submitted jobs are at /api/jobs/
    TASKS = "tasks"  # as their owners reported them (runtime/task_events.py)
    OBJECTS = "objects"  # the copies each live node's store holds

    @property
    def from_tables(self) -> bool:
        return self not in (StateKind.TASKS, StateKind.OBJECTS)


@dataclass(frozen=True, slots=True)
class GcsTables:
    """One consistent read of the tables the listings and metrics use."""

    nodes: list[Any]
    actors: list[Any]
    placement_groups: list[Any]
    drivers: dict[str, schema.JobRecord]
    load: dict[str, list[schema.LoadEntry]]


def read_tables(client: redis.Redis, cluster_id: str) -> GcsTables:
    keys = GcsKeys(cluster_id)
    pipe = client.pipeline()
    for key in (keys.nodes, keys.actors, keys.placement_groups, keys.jobs, keys.load):
        pipe.hgetall(key)
    nodes, actors, groups, jobs, load = pipe.execute()
    return GcsTables(
        nodes=[schema.decode_node(v) for v in nodes.values()],
        actors=[schema.decode_actor(v) for v in actors.values()],
        placement_groups=[schema.decode_placement_group(v) for v in groups.values()],
        drivers={_str(k): schema.decode_job(v) for k, v in jobs.items()},
        load={_str(k): schema.decode_load(v) for k, v in load.items()},
    )


class ClusterReader:
    """Where the listings and metrics read: Redis, the GCS, and each live node's raylet
    (`raylet_channel(address)`: a gRPC channel proving the cluster token; kept per node)."""

    def __init__(self, r: redis.Redis, cluster_id: str, gcs_call: Callable[..., Any],
                 raylet_channel: Callable[[str], Any]) -> None:
        self.r, self.cluster_id, self.gcs_call = r, cluster_id, gcs_call
        self._raylet_channel = raylet_channel
        self._stubs: dict[str, Any] = {}

    def tables(self) -> GcsTables:
        return read_tables(self.r, self.cluster_id)

    def drivers(self) -> dict[str, schema.JobRecord]:
        raw = self.r.hgetall(GcsKeys(self.cluster_id).jobs)
        return {_str(k): schema.decode_job(v) for k, v in raw.items()}  # type: ignore[union-attr]

    def tasks(self, limit: int = MAX_LISTED) -> Any:
        return self.gcs_call("ListTasks", gcs_pb2.ListTasksRequest(limit=limit), timeout=10)

    def task_summary(self) -> Any:
        return self.gcs_call("ListTasks", gcs_pb2.ListTasksRequest(summarize=True), timeout=10)

    def objects(self, nodes: list[Any], limit: int = MAX_LISTED) -> list[tuple[Any, Any]]:
        """(node, ListObjectsReply) for each live node that answered."""
        return self._each_node(nodes, "ListObjects", raylet_pb2.ListObjectsRequest(limit=limit))

    def store_stats(self, nodes: list[Any]) -> list[tuple[Any, Any]]:
        """(node, NodeStatsReply) for each live node that answered."""
        return self._each_node(nodes, "GetNodeStats", raylet_pb2.RayletEmpty())

    def log_files(self, nodes: list[Any]) -> list[tuple[Any, Any]]:
        """(node, ListLogsReply) for each live node that answered."""
        return self._each_node(nodes, "ListLogs", raylet_pb2.RayletEmpty())

    def read_log(self, node: Any, name: str, tail: int) -> tuple[str, str]:
        """(the end of one of `node`'s log files, "") or ("", why not)."""
        [(_, call)] = self._calls([node], "ReadLog", raylet_pb2.ReadLogRequest(name=name, tail=tail))
        try:
            reply = call.result()
        except grpc.RpcError as exc:
            return "", f"node {node.node_id} did not answer: {exc.details()}"
        if not reply.found:
            return "", f"node {node.node_id} has no log file {name!r}"
        return reply.data.decode(errors="replace"), ""

    def _each_node(self, nodes: list[Any], method: str, request: Any) -> list[tuple[Any, Any]]:
        answered = []
        for node, call in self._calls(nodes, method, request):
            try:
                answered.append((node, call.result()))
            except grpc.RpcError:
                continue  # gone or stopping: a dead node's copies are lost anyway
        return answered


    def _calls(self, nodes: list[Any], method: str, request: Any) -> list[tuple[Any, Any]]:
        """`method` sent to each live node at once: (node, its future)."""
        calls = []
        for node in nodes:
            if NodeState.from_wire(node.state) is NodeState.DEAD:
                continue
            address = f"{node.address}:{node.raylet_port}"
            stub = self._stubs.get(address)
            if stub is None:
                stub = self._stubs[address] = raylet_pb2_grpc.RayletStub(
                    self._raylet_channel(address))
            calls.append((node, getattr(stub, method).future(request, timeout=NODE_CALL_TIMEOUT_S)))
        return calls


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def rows(tables: GcsTables, kind: StateKind) -> list[dict[str, Any]]:
    if kind is StateKind.NODES:
        return [{
            "node_id": n.node_id, "state": NodeState.from_wire(n.state).value,
            "node_ip": n.address, "is_head_node": n.is_head, "node_type": n.node_type,
            "instance_id": n.instance_id, "resources_total": dict(n.total),
            "resources_available": dict(n.available), "death_reason": n.death_reason,
        } for n in sorted(tables.nodes, key=lambda n: (not n.is_head, n.node_id))]
    if kind is StateKind.ACTORS:
        return [{
            "actor_id": a.actor_id, "class_name": a.class_name,
            "state": ActorState.from_wire(a.state).value, "name": a.name,
            "namespace": a.namespace, "node_id": a.node_id, "pid": a.pid,
            "job_id": a.job_id, "num_restarts": a.num_restarts,
            "max_restarts": a.max_restarts, "detached": a.detached,
            "required_resources": dict(a.resources), "death_cause": a.death_cause,
        } for a in sorted(tables.actors, key=lambda a: a.actor_id)]
    if kind is StateKind.PLACEMENT_GROUPS:
        return [{
            "placement_group_id": g.pg_id, "name": g.name, "namespace": g.namespace,
            "state": PlacementGroupState.from_wire(g.state).value,
            "strategy": PlacementStrategy.from_wire(g.strategy).value,
            "bundles": [dict(b.resources) for b in g.bundles],
            "bundle_node_ids": list(g.bundle_node_ids), "job_id": g.job_id,
            "detached": g.detached, "created_at": g.created_at,
        } for g in sorted(tables.placement_groups, key=lambda g: g.created_at)]
    return [{
        "job_id": job_id, "type": "DRIVER",
        "status": "RUNNING" if record["end"] is None else "FINISHED",
        "driver_pid": record["driver_pid"], "driver_address": record["driver_address"],
        "namespace": record["namespace"], "start_time": int(record["start"] * 1000),
        "end_time": None if record["end"] is None else int(record["end"] * 1000),
    } for job_id, record in sorted(tables.drivers.items(), key=lambda kv: kv[1]["start"])]


def task_rows(reply: Any) -> list[dict[str, Any]]:
    return [{
        "task_id": t.task_id, "attempt_number": t.attempt, "name": t.name,
        "state": TaskStatus.from_wire(t.status).value, "job_id": t.job_id,
        "actor_id": t.actor_id or None, "type": TaskType.from_wire(t.type).value,
        "func_or_class_name": t.name, "parent_task_id": t.parent_task_id or None,
        "node_id": t.node_id or None, "worker_id": t.worker_id or None,
        "error_type": t.error_type or None, "error_message": t.error_message or None,
        "required_resources": dict(t.resources),
        "creation_time_ms": _ms(t.submitted_at), "start_time_ms": _ms(t.started_at),
        "end_time_ms": _ms(t.ended_at),
    } for t in reply.tasks]


def task_summary(reply: Any) -> dict[str, Any]:
    """`rayctl summary tasks`: counts by function (or actor method) and state (Ray's shape)."""
    return {
        "total": reply.total, "dropped": reply.dropped,
        "by_state": _by_status(reply.by_status),
        "summary": {g.name: {
            "func_or_class_name": g.name, "type": TaskType.from_wire(g.type).value,
            "state_counts": _by_status(g.by_status), "retries": g.retries,
        } for g in reply.groups},
    }


def _by_status(counts: Any) -> dict[str, int]:
    return {TaskStatus.from_wire(status).value: n for status, n in sorted(counts.items())}


def object_rows(answers: list[tuple[Any, Any]]) -> list[dict[str, Any]]:
    return [{
        "object_id": o.object_id, "object_size": o.size, "node_id": node.node_id,
        "node_ip": node.address, "copy": "PRIMARY" if o.primary else "SECONDARY",
        "in_memory": o.in_memory, "spilled": o.spilled, "pins": o.pins,
    } for node, reply in answers for o in reply.objects]


def _ms(unix_s: float) -> int | None:
    return int(unix_s * 1000) if unix_s else None


def matches(row: dict[str, Any], filters: list[tuple[str, str, str]]) -> bool:
    """`--filter key=value` / `key!=value`, as `ray list` takes them (values compared as text,
    case-insensitive)."""
    for key, op, value in filters:
        have = row.get(key)
        text = json.dumps(have) if isinstance(have, dict | list) else str(have)
        equal = text.lower() == value.lower()
        if equal != (op == "="):
            return False
    return True


def parse_filter(text: str) -> tuple[str, str, str]:
    for op in ("!=", "="):
        key, sep, value = text.partition(op)
        if sep and key.strip():
            return key.strip(), op, value.strip()
    raise ValueError(f"filter {text!r} must look like key=value or key!=value, e.g. state=ALIVE")

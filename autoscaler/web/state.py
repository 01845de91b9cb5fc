"""The cluster's state as rows, for `rayctl list` and `/api/state/<kind>` (Ray's `ray list`):
read from the GCS's tables in Redis through the runtime's schema, one pipeline per read."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

import redis

from runtime.gcs import schema
from runtime.gcs.schema import GcsKeys
from runtime.protocol.states import ActorState, NodeState, PlacementGroupState, PlacementStrategy


class StateKind(enum.StrEnum):
    NODES = "nodes"
    ACTORS = "actors"
    PLACEMENT_GROUPS = "placement-groups"
    JOBS = "jobs"  # drivers that called init(); submitted jobs are at /api/jobs/


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

"""Observe: build the planner's ClusterSnapshot from what the GCS wrote to Redis (nodes, load,
pending actors, request_resources bundles), what the provider lists, and the lifecycle store.
Reading is here; `build_snapshot` itself is pure so it is tested without Redis."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from autoscaler.config import ClusterConfig
from autoscaler.drain import NodeDrain, drain_from_proto
from autoscaler.lifecycle import InstanceRecord, InstanceStatus
from autoscaler.lifecycle_store import OfferingMark
from autoscaler.model import (
    ClusterSnapshot,
    DemandKind,
    InstanceInfo,
    Node,
    NodeState,
    NodeTypeSpec,
    PendingPlacementGroup,
    PlacementStrategy,
    ResourceDemand,
    ScalingConfig,
    Shape,
    UnavailableType,
)
from providers.base import Instance, NodeProvider, Offering
from runtime.gcs import schema
from runtime.gcs.schema import GcsKeys, KvKey, KvNamespace
from runtime.protocol.common_pb2 import ActorInfo, NodeInfo, PlacementGroupInfo
from runtime.protocol.states import NodeState as GcsNodeState
from runtime.protocol.states import PlacementStrategy as GcsPlacementStrategy
from runtime.protocol.states import ShapeKind

PENDING_ACTOR_STATES = (ActorInfo.PENDING, ActorInfo.RESTARTING)  # both are demand


@dataclass(frozen=True, slots=True)
class GcsNode:
    """One row of the GCS `nodes` table, protobuf left behind."""

    node_id: str
    node_type: str
    instance_id: str  # the cloud instance id (RAYCTL_INSTANCE_ID), "" for hand-started nodes
    total: Mapping[str, float]
    available: Mapping[str, float]
    idle_since: float  # 0 = busy
    state: GcsNodeState
    is_head: bool = False
    drain: NodeDrain | None = None  # while DRAINING: what still holds it, whether drained


@dataclass(frozen=True, slots=True)
class GcsView:
    nodes: tuple[GcsNode, ...] = ()
    demands: tuple[ResourceDemand, ...] = ()
    requested_bundles: tuple[Shape, ...] = ()
    placement_groups: tuple[PendingPlacementGroup, ...] = ()

    def alive_node_of(self, cloud_id: str) -> GcsNode | None:
        for node in self.nodes:
            if node.instance_id == cloud_id and node.state != GcsNodeState.DEAD:
                return node
        return None

    def dead_node_of(self, cloud_id: str) -> GcsNode | None:
        for node in self.nodes:
            if node.instance_id == cloud_id and node.state == GcsNodeState.DEAD:
                return node
        return None


def node_from_proto(info: NodeInfo) -> GcsNode:
    state = GcsNodeState.from_wire(info.state)
    return GcsNode(
        node_id=info.node_id,
        node_type=info.node_type,
        instance_id=info.instance_id,
        total=dict(info.total),
        available=dict(info.available),
        idle_since=float(info.idle_since),
        state=state,
        is_head=bool(info.is_head),
        drain=drain_from_proto(info.drain) if state is GcsNodeState.DRAINING else None,
    )


NodeSource = Callable[[], list[GcsNode]]


def redis_nodes(client: redis.Redis, cluster_id: str) -> NodeSource:
    """Nodes as the GCS last persisted them: joins, deaths, drains, and heartbeat fields when
    they change (the monitor's own source is the GCS's GetNodes: monitor.gcs_nodes)."""
    key = GcsKeys(cluster_id).nodes

    def read() -> list[GcsNode]:
        raw: dict[Any, Any] = client.hgetall(key)  # type: ignore[assignment]
        return [node_from_proto(schema.decode_node(value)) for value in raw.values()]

    return read


def read_gcs(client: redis.Redis, cluster_id: str, nodes: NodeSource) -> GcsView:
    keys = GcsKeys(cluster_id)
    pipe = client.pipeline()
    pipe.hgetall(keys.load)
    pipe.hgetall(keys.actors)
    pipe.hget(keys.kv(KvNamespace.AUTOSCALER), KvKey.RESOURCE_REQUESTS)
    pipe.hgetall(keys.placement_groups)
    load, actors, requests, groups = pipe.execute()
    demands = _merge([*_task_demand(load.values()), *_actor_demand(actors.values())])
    return GcsView(tuple(nodes()), demands, parse_bundles(requests), _pending_groups(groups.values()))


def _pending_groups(rows: Iterable[bytes]) -> tuple[PendingPlacementGroup, ...]:
    """Placement groups the GCS could not reserve yet: all their bundles are demand."""
    out = []
    for pg in map(schema.decode_placement_group, rows):
        if pg.state == PlacementGroupInfo.PENDING:
            bundles = tuple(Shape.of(dict(b.resources)) for b in pg.bundles)
            strategy = PlacementStrategy(GcsPlacementStrategy.from_wire(pg.strategy).value)
            out.append(PendingPlacementGroup(pg.pg_id, strategy, bundles))
    return tuple(sorted(out, key=lambda g: g.pg_id))


def _task_demand(rows: Iterable[bytes]) -> list[ResourceDemand]:
    out = []
    for row in rows:
        for entry in schema.decode_load(row):
            kind = DemandKind.ACTOR if entry.kind is ShapeKind.ACTOR else DemandKind.TASK
            out.append(ResourceDemand(Shape.of(entry.shape), entry.count, kind))
    return out


def _actor_demand(rows: Iterable[bytes]) -> list[ResourceDemand]:
    """Actors the GCS could not place yet wait in the `actors` table, not in `load`."""
    out = []
    for actor in map(schema.decode_actor, rows):
        if actor.state in PENDING_ACTOR_STATES and actor.resources:
            out.append(ResourceDemand(Shape.of(dict(actor.resources)), 1, DemandKind.ACTOR))
    return out


def _merge(demands: Sequence[ResourceDemand]) -> tuple[ResourceDemand, ...]:
    counts: dict[tuple[Shape, DemandKind], int] = {}
    for d in demands:
        if d.count > 0 and d.shape.items:
            counts[(d.shape, d.kind)] = counts.get((d.shape, d.kind), 0) + d.count
    return tuple(ResourceDemand(s, c, k) for (s, k), c in sorted(counts.items()))


def parse_bundles(raw: bytes | str | None) -> tuple[Shape, ...]:
    if not raw:
        return ()
    return tuple(Shape.of(b) for b in json.loads(raw) if b)


# --- config -> planner view -------------------------------------------------------------------


def node_type_resources(
    config: ClusterConfig, provider: NodeProvider, name: str
) -> dict[str, float]:
    own = config.node_type(name).resources
    if own is not None:
        return {k: float(v) for k, v in own.items()}
    return provider.node_resources(name)


def scaling_config(config: ClusterConfig, provider: NodeProvider) -> ScalingConfig:
    """The planner's view of a cluster config (resources autofilled by the provider)."""
    specs = []
    for name, entry in config.available_node_types.items():
        idle = entry.idle_timeout_s
        specs.append(
            NodeTypeSpec(
                name=name,
                resources=node_type_resources(config, provider, name),
                min_workers=entry.min_workers,
                max_workers=config.worker_max(name),
                idle_timeout_s=float(idle) if idle is not None else None,
                launch_config_hash=config.launch_hash(name, head=False),
            )
        )
    return ScalingConfig.of(
        specs,
        max_workers=config.max_workers,
        upscaling_speed=float(config.upscaling_speed),
        idle_timeout_s=float(config.idle_timeout_minutes) * 60.0,
        head_node_type=config.head_node_type,
    )


# --- the snapshot -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything one round reads, before it is turned into the planner's snapshot."""

    gcs: GcsView
    instances: tuple[Instance, ...]
    records: tuple[InstanceRecord, ...]
    marks: tuple[OfferingMark, ...] = ()
    offerings: Mapping[str, tuple[Offering, ...]] = field(default_factory=dict)  # by node type


def build_snapshot(obs: Observation, head_node_type: str, now: float) -> ClusterSnapshot:
    lifecycle_of = {r.cloud_instance_id: r.instance_id for r in obs.records if r.cloud_instance_id}
    nodes = tuple(
        _node(n, lifecycle_of.get(n.instance_id, ""), head_node_type)
        for n in obs.gcs.nodes
        if n.state != GcsNodeState.DEAD
    )
    instances = tuple(
        InstanceInfo(
            r.instance_id,
            r.node_type,
            r.status,
            r.launch_config_hash,
            _launched_at(r),
            _running_since(r),
        )
        for r in obs.records
        if r.status != InstanceStatus.TERMINATED
    )
    return ClusterSnapshot(
        nodes=nodes,
        instances=instances,
        demands=obs.gcs.demands,
        requested_bundles=obs.gcs.requested_bundles,
        placement_groups=obs.gcs.placement_groups,
        unavailable=unavailable_types(obs.marks, obs.offerings, now),
    )


def _node(n: GcsNode, lifecycle_id: str, head_node_type: str) -> Node:
    return Node(
        node_id=n.node_id,
        node_type=n.node_type or (head_node_type if n.is_head else ""),
        total=n.total,
        available=n.available,
        instance_id=lifecycle_id,
        idle_since=n.idle_since or None,
        state=NodeState.DRAINING if n.state == GcsNodeState.DRAINING else NodeState.ALIVE,
        is_head=n.is_head,
    )


def _running_since(record: InstanceRecord) -> float:
    at = [c.at for c in record.history if c.status == InstanceStatus.RAYLET_RUNNING]
    return at[-1] if at else 0.0


def _launched_at(record: InstanceRecord) -> float:
    for change in record.history:
        if change.status == InstanceStatus.REQUESTED:
            return change.at
    return record.history[0].at


def unavailable_types(
    marks: Sequence[OfferingMark], offerings: Mapping[str, Sequence[Offering]], now: float
) -> tuple[UnavailableType, ...]:
    """A type is unavailable while every one of its offerings is marked (or the type is)."""
    live = [m for m in marks if m.until > now]
    out = []
    for node_type, choices in sorted(offerings.items()):
        mine = [m for m in live if m.node_type == node_type]
        whole = next((m for m in mine if m.whole_type), None)
        if whole is not None:
            out.append(UnavailableType(node_type, whole.until, whole.reason))
            continue
        covering = [next((m for m in mine if m.covers(o)), None) for o in choices]
        if choices and all(m is not None for m in covering):
            first = [m for m in covering if m is not None]
            out.append(UnavailableType(node_type, min(m.until for m in first), first[0].reason))
    return tuple(out)

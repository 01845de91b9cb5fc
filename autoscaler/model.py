"""The planner's vocabulary: what it reads (ClusterSnapshot, ScalingConfig) and what it returns
(Plan of launch / drain / terminate actions and infeasible shapes). Frozen values, no behaviour
beyond small derived properties."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from autoscaler.lifecycle import InstanceStatus

# Resources every node type has; GPUs and custom resources beyond them are "special", and the
# planner avoids spending a node type that has them on work that does not ask for them.
STANDARD_RESOURCES = frozenset({"CPU", "memory", "object_store_memory"})


@dataclass(frozen=True, slots=True, order=True)
class Shape:
    """A resource request such as {CPU: 1, GPU: 1}: sorted (name, amount) pairs, zeros dropped,
    hashable so identical requests group together."""

    items: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, resources: Mapping[str, float]) -> Shape:
        for name, amount in resources.items():
            if not math.isfinite(amount) or amount < 0:
                raise ValueError(f"resource {name!r} must be a finite number >= 0, got {amount!r}")
        return cls(tuple(sorted((k, float(v)) for k, v in resources.items() if v > 0)))

    def as_dict(self) -> dict[str, float]:
        return dict(self.items)

    @property
    def uses_gpu(self) -> bool:
        return any(name == "GPU" for name, _ in self.items)

    def plus(self, other: Shape) -> Shape:
        total = self.as_dict()
        for name, amount in other.items:
            total[name] = total.get(name, 0.0) + amount
        return Shape.of(total)

    def __str__(self) -> str:
        inner = ", ".join(f"{k}: {_num(v)}" for k, v in self.items)
        return "{" + inner + "}"


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


class DemandKind(enum.StrEnum):
    TASK = "task"
    ACTOR = "actor"


@dataclass(frozen=True, slots=True)
class ResourceDemand:
    """`count` queued tasks or pending actors of one shape (the backlog, not lease requests)."""

    shape: Shape
    count: int
    kind: DemandKind = DemandKind.TASK


class PlacementStrategy(enum.StrEnum):
    PACK = "PACK"  # prefer one node, may split
    SPREAD = "SPREAD"  # prefer distinct nodes, may share
    STRICT_PACK = "STRICT_PACK"  # all bundles on one node
    STRICT_SPREAD = "STRICT_SPREAD"  # every bundle on a different node


@dataclass(frozen=True, slots=True)
class PendingPlacementGroup:
    pg_id: str
    strategy: PlacementStrategy
    bundles: tuple[Shape, ...]  # only the bundles not yet placed


class NodeState(enum.StrEnum):
    ALIVE = "alive"
    DRAINING = "draining"


@dataclass(frozen=True, slots=True)
class Node:
    """A raylet registered with the GCS. `instance_id` ties it to a lifecycle Instance ("" for
    the head or a node started by hand: those count as capacity but are never drained)."""

    node_id: str
    node_type: str
    total: Mapping[str, float]
    available: Mapping[str, float]
    instance_id: str = ""
    idle_since: float | None = None  # None while anything runs there
    state: NodeState = NodeState.ALIVE
    is_head: bool = False


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """What the planner needs of one lifecycle record (see autoscaler.lifecycle)."""

    instance_id: str
    node_type: str
    status: InstanceStatus
    launch_config_hash: str = ""
    launched_at: float = 0.0
    running_since: float = 0.0  # when its raylet registered (RAYLET_RUNNING); 0: not (yet)


@dataclass(frozen=True, slots=True)
class UnavailableType:
    """A node type whose offerings all failed with CapacityError: skipped until `until`."""

    node_type: str
    until: float
    reason: str = "no capacity"


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    nodes: tuple[Node, ...] = ()
    instances: tuple[InstanceInfo, ...] = ()
    demands: tuple[ResourceDemand, ...] = ()
    placement_groups: tuple[PendingPlacementGroup, ...] = ()
    # request_resources() bundles: persist until replaced; satisfied "as if the cluster were idle"
    requested_bundles: tuple[Shape, ...] = ()
    unavailable: tuple[UnavailableType, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeTypeSpec:
    """One `available_node_types` entry as the planner sees it (named *Spec* so it does not
    clash with the pydantic `autoscaler.config.NodeTypeConfig` it is built from)."""

    name: str
    resources: Mapping[str, float]
    min_workers: int = 0
    max_workers: int = 0
    idle_timeout_s: float | None = None  # None: use ScalingConfig.idle_timeout_s
    launch_config_hash: str = ""

    @property
    def has_gpu(self) -> bool:
        return self.resources.get("GPU", 0) > 0


@dataclass(frozen=True, slots=True)
class ScalingConfig:
    node_types: Mapping[str, NodeTypeSpec] = field(default_factory=dict)
    max_workers: int = 2  # whole cluster, head excluded (Ray's default)
    upscaling_speed: float = 1.0
    idle_timeout_s: float = 300.0
    head_node_type: str = ""

    @classmethod
    def of(cls, types: list[NodeTypeSpec], **kwargs: object) -> ScalingConfig:
        return cls(node_types={t.name: t for t in types}, **kwargs)  # type: ignore[arg-type]

    def idle_timeout_for(self, node_type: str) -> float:
        spec = self.node_types.get(node_type)
        if spec is not None and spec.idle_timeout_s is not None:
            return spec.idle_timeout_s
        return self.idle_timeout_s


# --- the plan ---------------------------------------------------------------------------------


class LaunchCause(enum.StrEnum):
    """Why the planner launches (Ray v2 keeps the same split of its launch requests)."""

    MIN_WORKERS = "min_workers"  # below a type's min_workers
    REPLACEMENT = "replacement"  # min_workers again, for workers whose launch config changed
    REQUEST_RESOURCES = "request_resources"  # bundles from autoscaler.sdk.request_resources()
    PLACEMENT_GROUP = "placement_group"  # a pending placement group's bundles
    QUEUED_DEMAND = "queued_demand"  # queued tasks and pending actors


class TerminationCause(enum.StrEnum):
    """Why an instance is drained or terminated (Ray v2's TerminationRequest.Cause, ours)."""

    IDLE = "idle"  # idle past its idle timeout
    OUTDATED = "outdated"  # its launch config changed, or its type left the config
    OVER_TYPE_MAX = "over_type_max_workers"  # above its type's max_workers
    OVER_CLUSTER_MAX = "over_cluster_max_workers"  # above the cluster's max_workers
    RAYLET_DIED = "raylet_died"  # its raylet died or stopped heartbeating
    INSTALL_FAILED = "install_failed"  # its raylet never came up
    NEVER_READY = "never_ready"  # allocated, but never ready to install within the install timeout
    DRAINED = "drained"  # the GCS reports the drain finished
    DRAIN_TIMEOUT = "drain_timeout"  # the drain did not finish within the drain timeout
    LEAKED = "leaked"  # an instance of the cluster no record knows
    PREEMPTED = "preempted"  # the cloud no longer lists it (spot preemption, deleted by hand)
    GANG_ROLLBACK = "gang_rollback"  # another part of its gang could not be launched


@dataclass(frozen=True, slots=True)
class LaunchAction:
    node_type: str
    count: int
    reason: str
    cause: LaunchCause
    # Launches sharing a gang id (a placement group's) are all or nothing: each type's nodes in
    # one all-or-nothing call, types one after another, earlier types rolled back if a later
    # one fails. "" = a plain batch, which the cloud may grant in part.
    gang: str = ""


@dataclass(frozen=True, slots=True)
class DrainAction:
    """Stop scheduling on the node, let running work finish, then terminate its instance."""

    node_id: str
    instance_id: str
    reason: str
    cause: TerminationCause

    @property
    def idle_only(self) -> bool:
        """An idle drain is refused if work arrived since the snapshot; a scale-down for a cap
        or a config change drains a busy node too (its running work finishes first)."""
        return self.cause is TerminationCause.IDLE


@dataclass(frozen=True, slots=True)
class TerminateAction:
    """Terminate an instance that has no node to drain (e.g. still launching)."""

    instance_id: str
    reason: str
    cause: TerminationCause


@dataclass(frozen=True, slots=True)
class Infeasible:
    """Demand no existing node and no node type can ever fit: reported, never launched for."""

    shape: Shape
    count: int
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    launches: tuple[LaunchAction, ...] = ()
    drains: tuple[DrainAction, ...] = ()
    terminates: tuple[TerminateAction, ...] = ()
    infeasible: tuple[Infeasible, ...] = ()
    notes: tuple[str, ...] = ()  # decisions not to act (capped, deferred), for `rayctl status`

    def launch_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for launch in self.launches:
            counts[launch.node_type] = counts.get(launch.node_type, 0) + launch.count
        return dict(sorted(counts.items()))

    def drained_node_ids(self) -> list[str]:
        return sorted(d.node_id for d in self.drains)

    def is_empty(self) -> bool:
        return not (self.launches or self.drains or self.terminates)

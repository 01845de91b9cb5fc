"""PlanState: the scratch pad the policies share while one plan is made — what the cluster will
look like after the actions decided so far. Built from the snapshot, frozen into a Plan at the end."""

from __future__ import annotations

from dataclasses import dataclass, field

from autoscaler.lifecycle import ACTIVE, PENDING, InstanceStatus
from autoscaler.model import (
    ClusterSnapshot,
    DrainAction,
    Infeasible,
    InstanceInfo,
    LaunchAction,
    LaunchCause,
    Node,
    NodeState,
    NodeTypeSpec,
    Plan,
    ScalingConfig,
    TerminateAction,
    TerminationCause,
)


@dataclass(slots=True)
class LaunchIntent:
    node_type: str
    count: int
    reason: str
    cause: LaunchCause
    # min_workers, request_resources and placement-group launches are not held back by
    # upscaling_speed (as in Ray: the user asked for exactly that size)
    bypass_speed: bool = False
    gang: str = ""  # see LaunchAction.gang


@dataclass(slots=True)
class PlanState:
    snapshot: ClusterSnapshot
    config: ScalingConfig
    now: float
    instances: dict[str, InstanceInfo] = field(default_factory=dict)
    # node id -> node that can take work (alive, not draining, not drained by this plan)
    in_service: dict[str, Node] = field(default_factory=dict)
    launches: list[LaunchIntent] = field(default_factory=list)
    drains: list[DrainAction] = field(default_factory=list)
    terminates: list[TerminateAction] = field(default_factory=list)
    infeasible: list[Infeasible] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    needed_nodes: set[str] = field(default_factory=set)  # pending demand will use them
    released: set[str] = field(default_factory=set)  # instance ids drained/terminated here
    _worker_counts: dict[tuple[int, bool], dict[str, int]] = field(default_factory=dict)

    @classmethod
    def start(cls, snapshot: ClusterSnapshot, config: ScalingConfig, now: float) -> PlanState:
        state = cls(snapshot=snapshot, config=config, now=now)
        state.instances = {i.instance_id: i for i in snapshot.instances}
        for node in snapshot.nodes:
            if node.state == NodeState.ALIVE and not _instance_leaving(state, node):
                state.in_service[node.node_id] = node
        return state

    # --- what exists --------------------------------------------------------------------------

    def spec(self, node_type: str) -> NodeTypeSpec | None:
        return self.config.node_types.get(node_type)

    def is_current(self, instance: InstanceInfo) -> bool:
        spec = self.spec(instance.node_type)
        return spec is not None and instance.launch_config_hash == spec.launch_config_hash

    def active_instances(self) -> list[InstanceInfo]:
        """Instances that are or will become workers, minus those released by this plan."""
        return [
            i
            for i in self.instances.values()
            if i.status in ACTIVE and i.instance_id not in self.released
        ]

    def workers(self, node_type: str, *, current_only: bool = False) -> int:
        """Active workers of a type (existing and pending), after this plan's releases."""
        key = (len(self.released), current_only)
        counts = self._worker_counts.get(key)
        if counts is None:  # recounted only after a release: 1,000 nodes x 20 types adds up
            counts = {}
            for i in self.active_instances():
                if not current_only or self.is_current(i):
                    counts[i.node_type] = counts.get(i.node_type, 0) + 1
            self._worker_counts[key] = counts
        return counts.get(node_type, 0)

    def total_workers(self) -> int:
        return len(self.active_instances())

    def node_of_instance(self) -> dict[str, Node]:
        return {n.instance_id: n for n in self.snapshot.nodes if n.instance_id}

    def pending_instances(self) -> list[InstanceInfo]:
        """Active instances whose node cannot take work yet (launching, installing, or RUNNING
        but its raylet not registered): their capacity is coming."""
        with_node = {n.instance_id for n in self.snapshot.nodes if n.instance_id}
        return [
            i
            for i in self.active_instances()
            if i.status in PENDING
            or (i.status == InstanceStatus.RAYLET_RUNNING and i.instance_id not in with_node)
        ]

    def unavailable_until(self, node_type: str) -> float | None:
        until = [u.until for u in self.snapshot.unavailable if u.node_type == node_type]
        latest = max(until, default=None)
        return latest if latest is not None and latest > self.now else None

    # --- what this plan adds ------------------------------------------------------------------

    def planned(self, node_type: str | None = None) -> int:
        return sum(li.count for li in self.launches if node_type in (None, li.node_type))

    def launch(
        self,
        node_type: str,
        count: int,
        reason: str,
        cause: LaunchCause,
        *,
        bypass_speed: bool = False,
        gang: str = "",
    ) -> None:
        if count > 0:
            self.launches.append(LaunchIntent(node_type, count, reason, cause, bypass_speed, gang))

    def drain(self, node: Node, reason: str, cause: TerminationCause) -> None:
        self.drains.append(DrainAction(node.node_id, node.instance_id, reason, cause))
        self.in_service.pop(node.node_id, None)
        if node.instance_id:
            self.released.add(node.instance_id)

    def terminate(self, instance_id: str, reason: str, cause: TerminationCause) -> None:
        self.terminates.append(TerminateAction(instance_id, reason, cause))
        self.released.add(instance_id)

    def to_plan(self) -> Plan:
        launches = tuple(
            LaunchAction(li.node_type, li.count, li.reason, li.cause, li.gang)
            for li in self.launches
            if li.count > 0
        )
        return Plan(
            launches=launches,
            drains=tuple(self.drains),
            terminates=tuple(self.terminates),
            infeasible=tuple(self.infeasible),
            notes=tuple(self.notes),
        )


def _instance_leaving(state: PlanState, node: Node) -> bool:
    instance = state.instances.get(node.instance_id) if node.instance_id else None
    return instance is not None and instance.status not in ACTIVE

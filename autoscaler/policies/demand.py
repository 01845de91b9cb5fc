"""demand: launch nodes for what is waiting, in Ray's order — request_resources() bundles (packed
onto the cluster's *total* capacity, as if idle), then pending placement groups, then queued
tasks and pending actors (packed onto *free* capacity). Each pass fills existing and already
planned capacity first, then opens new nodes of the best type. Shapes no node and no node type
can ever fit are reported infeasible; nodes the demand lands on are kept from idle drain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from autoscaler.model import Infeasible, LaunchCause, Node, Shape
from autoscaler.policies import placement
from autoscaler.policies.binpack import (
    Budget,
    FreePool,
    NewNodes,
    RowId,
    RowKind,
    TypeChooser,
    fit_count,
    pack_new_nodes,
)
from autoscaler.policies.reasons import describe, waiting_reason
from autoscaler.policies.state import PlanState

# The demand the planner reads and a new node's usage come from different raylets' reports: for
# a moment after a node joins, the tasks it already runs can still be listed as queued (the
# caller's raylet reports them a beat later). Seen as queued demand plus a busy node, they would
# launch a second node for the same work (the chaos suite saw 4 one-CPU workers made for two
# one-CPU tasks). So a node counts whole for this long after its raylet registered.
JOIN_SETTLE_S = 2.0


def apply(state: PlanState) -> None:
    config = state.config
    launchable = [
        name
        for name, spec in config.node_types.items()
        if spec.max_workers > 0 and state.unavailable_until(name) is None
    ]
    chooser = TypeChooser(list(config.node_types.values()), launchable)
    budget = _budget(state)
    ids, totals = _capacity(state, use_total=True)
    feasible = _Feasibility(state, FreePool(ids, totals))
    _requests(state, FreePool(ids, totals), chooser, budget, feasible)
    pool = FreePool(*_capacity(state, use_total=False))
    for group in sorted(state.snapshot.placement_groups, key=lambda g: g.pg_id):
        placement.place_group(state, group, pool, chooser, budget, feasible)
    _queued(state, pool, chooser, budget, feasible)
    state.needed_nodes.update(pool.used_nodes())


def _budget(state: PlanState) -> Budget:
    config = state.config
    per_type = {
        name: spec.max_workers - state.workers(name) - state.planned(name)
        for name, spec in config.node_types.items()
    }
    total = config.max_workers - state.total_workers() - state.planned()
    return Budget(per_type, total)


def _just_joined(state: PlanState, node: Node) -> bool:
    """Its raylet registered less than JOIN_SETTLE_S ago."""
    instance = state.instances.get(node.instance_id)
    return (
        instance is not None
        and instance.running_since > 0
        and state.now - instance.running_since < JOIN_SETTLE_S
    )


def _capacity(
    state: PlanState, *, use_total: bool
) -> tuple[list[RowId], list[Mapping[str, float]]]:
    """Rows for a FreePool: busy nodes first, then idle ones (most recently busy first, so the
    longest idle stay drainable), then pending instances and nodes planned so far. A node that
    just joined counts whole: what runs there may be the queued work it was launched for,
    still listed by a load report older than the node's own."""

    def order(node: Node) -> tuple[bool, float, str]:
        idle = node.idle_since is not None
        return (idle, -(node.idle_since or 0.0), node.node_id)

    nodes = sorted(state.in_service.values(), key=order)
    ids = [RowId.node(n.node_id) for n in nodes]
    capacities: list[Mapping[str, float]] = [
        n.total if use_total or _just_joined(state, n) else n.available for n in nodes
    ]
    for instance in state.pending_instances():
        spec = state.spec(instance.node_type)
        if spec is not None and state.is_current(instance):
            ids.append(RowId(RowKind.PENDING, instance.instance_id))
            capacities.append(spec.resources)
    for li in state.launches:
        spec = state.spec(li.node_type)
        if spec is not None:
            ids.extend(RowId(RowKind.PLANNED, li.node_type, i) for i in range(li.count))
            capacities.extend([spec.resources] * li.count)
    return ids, capacities


class _Feasibility:
    """A shape is feasible if some launchable-in-principle node type (max_workers > 0, whether
    or not it is capped or unavailable now) or some node's total capacity can hold it."""

    def __init__(self, state: PlanState, totals: FreePool) -> None:
        self.types = [s for s in state.config.node_types.values() if s.max_workers > 0]
        self.totals = totals
        self._cache: dict[Shape, bool] = {}

    def __call__(self, shape: Shape) -> bool:
        known = self._cache.get(shape)
        if known is None:
            known = any(fit_count(t.resources, shape) for t in self.types) or self.totals.fits_any(
                shape
            )
            self._cache[shape] = known
        return known


def _requests(
    state: PlanState, pool: FreePool, chooser: TypeChooser, budget: Budget, feasible: _Feasibility
) -> None:
    counts = _group(state.snapshot.requested_bundles)
    residual = _place_all(pool, chooser, counts)
    for shape, count in list(residual):
        if not feasible(shape):
            residual.remove((shape, count))
            state.infeasible.append(
                Infeasible(shape, count, f"request_resources bundle {shape} fits no node type")
            )
    new = pack_new_nodes(residual, chooser, budget)
    template = "request_resources: {} beyond the cluster's total capacity"
    _launch(state, new, template, LaunchCause.REQUEST_RESOURCES)
    _note_unplaced(state, chooser, new.unplaced, "request_resources")
    state.needed_nodes.update(pool.used_nodes())


def _queued(
    state: PlanState, pool: FreePool, chooser: TypeChooser, budget: Budget, feasible: _Feasibility
) -> None:
    counts: dict[Shape, int] = {}
    for demand in state.snapshot.demands:
        if demand.shape.items and demand.count > 0:
            counts[demand.shape] = counts.get(demand.shape, 0) + demand.count
    for shape in [s for s in counts if not feasible(s)]:
        state.infeasible.append(
            Infeasible(shape, counts.pop(shape), _infeasible_reason(state, shape))
        )
    residual = _place_all(pool, chooser, counts)
    new = pack_new_nodes(residual, chooser, budget)
    _launch(state, new, "queued {} with no free capacity", LaunchCause.QUEUED_DEMAND)
    _note_unplaced(state, chooser, new.unplaced, "queued")


def _place_all(
    pool: FreePool, chooser: TypeChooser, counts: Mapping[Shape, int]
) -> list[tuple[Shape, int]]:
    residual: list[tuple[Shape, int]] = []
    for shape in sorted(counts, key=chooser.size_key):
        left = counts[shape] - pool.place(shape, counts[shape])
        if left > 0:
            residual.append((shape, left))
    return residual


def _group(shapes: Sequence[Shape]) -> dict[Shape, int]:
    counts: dict[Shape, int] = {}
    for shape in shapes:
        if shape.items:
            counts[shape] = counts.get(shape, 0) + 1
    return counts


def _launch(state: PlanState, new: NewNodes, template: str, cause: LaunchCause) -> None:
    # request_resources() is not held back by upscaling_speed (Ray: the user asked for exactly
    # that size); queued demand is
    bypass_speed = cause is LaunchCause.REQUEST_RESOURCES
    for node_type in sorted(new.counts):
        reason = template.format(describe(new.contents[node_type]))
        state.launch(node_type, new.counts[node_type], reason, cause, bypass_speed=bypass_speed)


def _infeasible_reason(state: PlanState, shape: Shape) -> str:
    known = ", ".join(
        f"{name} {Shape.of(spec.resources)}"
        for name, spec in sorted(state.config.node_types.items())
    )
    return (
        f"{shape} fits no node and no node type with max_workers > 0 (types: {known or 'none'}); "
        "add a node type that has these resources or request fewer"
    )


def _note_unplaced(
    state: PlanState, chooser: TypeChooser, unplaced: list[tuple[Shape, int]], what: str
) -> None:
    for shape, count in unplaced:
        state.notes.append(
            f"{what}: {count} x {shape} waits: {waiting_reason(state, chooser, shape)}"
        )

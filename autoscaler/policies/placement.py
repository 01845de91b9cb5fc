"""Pending placement groups, part of the demand policy: where a group's bundles go, per strategy,
all or nothing (a group that cannot be placed whole launches nothing and says why).

    STRICT_PACK   all bundles on one node: an existing node, else one new node that fits the total
    PACK          one node if possible (existing, else new); otherwise split like plain demand
    SPREAD        distinct existing nodes first, then shared; new nodes packed (the runtime spreads
                  over what exists: launching extra nodes only to spread would cost without need)
    STRICT_SPREAD each bundle on a different node: distinct existing nodes, then one new node each
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce

from autoscaler.model import (
    Infeasible,
    LaunchCause,
    PendingPlacementGroup,
    PlacementStrategy,
    Shape,
)
from autoscaler.policies.binpack import (
    Budget,
    FreePool,
    NewNodes,
    RowId,
    RowKind,
    TypeChooser,
    pack_new_nodes,
)
from autoscaler.policies.reasons import describe, waiting_reason
from autoscaler.policies.state import PlanState

Strategy = Callable[[list[Shape], FreePool, TypeChooser, Budget], NewNodes]


def place_group(
    state: PlanState,
    group: PendingPlacementGroup,
    pool: FreePool,
    chooser: TypeChooser,
    budget: Budget,
    feasible: Callable[[Shape], bool],
) -> None:
    bundles = sorted((b for b in group.bundles if b.items), key=chooser.size_key)
    label = f"placement group {group.pg_id} ({group.strategy.value}, {len(bundles)} bundles)"
    if not bundles or _report_infeasible(state, group, bundles, feasible, label):
        return
    saved_pool, saved_budget = pool.save(), budget.copy()
    new = STRATEGIES[group.strategy](bundles, pool, chooser, budget)
    if new.unplaced:
        pool.restore(saved_pool)
        budget.per_type, budget.total = saved_budget.per_type, saved_budget.total
        shape = new.unplaced[0][0]
        state.notes.append(f"{label} waits: {waiting_reason(state, chooser, shape)}")
        return
    # The group's new nodes are one gang: the runtime reserves a group whole or not at all, so
    # half of its nodes would only cost money.
    for node_type in sorted(new.counts):
        state.launch(
            node_type,
            new.counts[node_type],
            f"{label}: {describe(new.contents[node_type])}",
            LaunchCause.PLACEMENT_GROUP,
            bypass_speed=True,
            gang=group.pg_id,
        )
    ids: list[RowId] = []
    capacities: list[dict[str, float]] = []
    for node_type, free, repeat in new.leftovers:
        for _ in range(repeat):
            ids.append(RowId(RowKind.GROUP_SPARE, node_type, len(ids), group.pg_id))
            capacities.append(free)
    pool.add(ids, capacities)


def _report_infeasible(
    state: PlanState,
    group: PendingPlacementGroup,
    bundles: list[Shape],
    feasible: Callable[[Shape], bool],
    label: str,
) -> bool:
    bad = sorted({b for b in bundles if not feasible(b)})
    for shape in bad:
        count = bundles.count(shape)
        state.infeasible.append(
            Infeasible(shape, count, f"{label}: bundle {shape} fits no node type")
        )
    if bad:
        return True
    if group.strategy == PlacementStrategy.STRICT_PACK:
        total = _total(bundles)
        if not feasible(total):
            reason = f"{label}: STRICT_PACK needs one node with {total}; no node type has that"
            state.infeasible.append(Infeasible(total, 1, reason))
            return True
    return False


def _total(bundles: Sequence[Shape]) -> Shape:
    return reduce(Shape.plus, bundles, Shape(()))


def _strict_pack(
    bundles: list[Shape], pool: FreePool, chooser: TypeChooser, budget: Budget
) -> NewNodes:
    total = _total(bundles)
    if pool.place(total, 1):
        return NewNodes()
    return pack_new_nodes([(total, 1)], chooser, budget)


def _pack(bundles: list[Shape], pool: FreePool, chooser: TypeChooser, budget: Budget) -> NewNodes:
    total = _total(bundles)
    if pool.place(total, 1):
        return NewNodes()
    whole = pack_new_nodes([(total, 1)], chooser, budget)
    return whole if not whole.unplaced else _flat(bundles, pool, chooser, budget)


def _spread(bundles: list[Shape], pool: FreePool, chooser: TypeChooser, budget: Budget) -> NewNodes:
    return _flat(pool.place_distinct(bundles), pool, chooser, budget)


def _strict_spread(
    bundles: list[Shape], pool: FreePool, chooser: TypeChooser, budget: Budget
) -> NewNodes:
    left = pool.place_distinct(bundles)
    return pack_new_nodes(_counts(left), chooser, budget, one_per_node=True)


def _flat(bundles: list[Shape], pool: FreePool, chooser: TypeChooser, budget: Budget) -> NewNodes:
    residual = []
    for shape, count in _counts(bundles):
        left = count - pool.place(shape, count)
        if left:
            residual.append((shape, left))
    return pack_new_nodes(residual, chooser, budget)


def _counts(bundles: Sequence[Shape]) -> list[tuple[Shape, int]]:
    counts: dict[Shape, int] = {}
    for shape in bundles:
        counts[shape] = counts.get(shape, 0) + 1
    return list(counts.items())


STRATEGIES: dict[PlacementStrategy, Strategy] = {
    PlacementStrategy.STRICT_PACK: _strict_pack,
    PlacementStrategy.PACK: _pack,
    PlacementStrategy.SPREAD: _spread,
    PlacementStrategy.STRICT_SPREAD: _strict_spread,
}

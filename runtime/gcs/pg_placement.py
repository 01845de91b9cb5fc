"""Where a placement group's bundles go: a pure function of the bundles, the strategy and the
nodes' free resources. None when the group cannot be placed now (it stays pending: demand)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runtime.protocol.states import PlacementStrategy
from runtime.resources import fits, subtract

Free = dict[str, dict[str, float]]  # node_id -> free resources


def place(bundles: Sequence[Mapping[str, float]], strategy: PlacementStrategy,
          free_by_node: Mapping[str, Mapping[str, float]]) -> list[str] | None:
    free: Free = {node: dict(res) for node, res in free_by_node.items()}
    match strategy:
        case PlacementStrategy.STRICT_PACK:
            return _strict_pack(bundles, free)
        case PlacementStrategy.PACK:
            return _strict_pack(bundles, free) or _greedy(bundles, free, prefer_used=True, distinct=False)
        case PlacementStrategy.STRICT_SPREAD:
            return _greedy(bundles, free, prefer_used=False, distinct=True)
        case PlacementStrategy.SPREAD:
            return _greedy(bundles, free, prefer_used=False, distinct=True) or _greedy(
                bundles, free, prefer_used=False, distinct=False)


def _strict_pack(bundles: Sequence[Mapping[str, float]], free: Free) -> list[str] | None:
    total: dict[str, float] = {}
    for bundle in bundles:
        for name, amount in bundle.items():
            total[name] = total.get(name, 0.0) + amount
    fitting = [node for node, res in free.items() if fits(total, res)]
    if not fitting:
        return None
    best = max(fitting, key=lambda node: free[node].get("CPU", 0.0))
    return [best] * len(bundles)


def _greedy(bundles: Sequence[Mapping[str, float]], free: Free, *, prefer_used: bool,
            distinct: bool) -> list[str] | None:
    """Largest bundles first; each onto a used node (PACK), or an unused one (SPREAD)."""
    free = {node: dict(res) for node, res in free.items()}
    order = sorted(range(len(bundles)), key=lambda i: -sum(bundles[i].values()))
    placed: dict[int, str] = {}
    used: list[str] = []
    for i in order:
        fitting = [n for n in free if fits(bundles[i], free[n]) and not (distinct and n in used)]
        if not fitting:
            return None
        in_use = [n for n in fitting if n in used]
        if prefer_used and in_use:
            choice = in_use[0]
        else:
            fresh = [n for n in fitting if n not in used] or fitting
            choice = max(fresh, key=lambda n: free[n].get("CPU", 0.0))
        subtract(free[choice], bundles[i])
        placed[i] = choice
        if choice not in used:
            used.append(choice)
    return [placed[i] for i in range(len(bundles))]

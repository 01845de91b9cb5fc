"""Scheduling strategies, named as in Ray (`ray.util.scheduling_strategies`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SPREAD = "SPREAD"  # scheduling_strategy="SPREAD", and its wire form in lease requests


@dataclass(frozen=True)
class NodeAffinitySchedulingStrategy:
    """Run on `node_id`; with soft=True fall back to the default policy when it is gone."""

    node_id: str
    soft: bool = False


@dataclass(frozen=True)
class PlacementGroupSchedulingStrategy:
    """Run inside a placement group's bundles (one bundle when `placement_group_bundle_index` >= 0)."""

    placement_group: Any
    placement_group_bundle_index: int = -1
    placement_group_capture_child_tasks: bool | None = None


def to_wire(strategy: Any) -> Any:
    """The form a lease request carries: None / "SPREAD" / {"node_id", "soft"}."""
    if strategy is None or strategy == "DEFAULT":
        return None
    if strategy == SPREAD:
        return SPREAD
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return {"node_id": strategy.node_id, "soft": strategy.soft}
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        return None  # expressed through the bundle resources instead (see runtime.util.placement_group)
    raise ValueError(
        f"unknown scheduling_strategy {strategy!r}: use 'DEFAULT', 'SPREAD', "
        "NodeAffinitySchedulingStrategy(node_id, soft) or PlacementGroupSchedulingStrategy(pg, index)"
    )

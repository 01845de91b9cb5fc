"""Helpers beyond the core API, as in `ray.util`."""

from runtime.util import queue
from runtime.util.actor_pool import ActorPool
from runtime.util.placement_group import (
    PlacementGroup,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from runtime.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

__all__ = [
    "ActorPool", "NodeAffinitySchedulingStrategy", "PlacementGroup", "PlacementGroupSchedulingStrategy",
    "get_placement_group", "placement_group", "placement_group_table", "queue", "remove_placement_group",
]

"""Helpers beyond the core API, as in `ray.util`."""

from runtime.util import queue
from runtime.util.actor_pool import ActorPool
from runtime.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from runtime.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)


def get_node_ip_address() -> str:
    """The address this process's node binds and other nodes reach it at (as Ray's): the
    node's `--node-ip-address`; outside a cluster, what `rayctl start` would use here."""
    import os

    from runtime import api

    if api.is_initialized():
        return str(api._core().host)
    return os.environ.get("RAYCTL_NODE_IP_ADDRESS", "127.0.0.1")


__all__ = [
    "ActorPool", "NodeAffinitySchedulingStrategy", "PlacementGroup", "PlacementGroupSchedulingStrategy",
    "get_current_placement_group", "get_node_ip_address", "get_placement_group", "placement_group", "placement_group_table", "queue",
    "remove_placement_group",
]

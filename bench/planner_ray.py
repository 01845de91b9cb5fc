"""Ray's side of the planner benchmark, run in Ray's venv by `bench/planner.py --ray`: times one
call of Ray's `ResourceDemandScheduler.get_nodes_to_launch` on the arguments `to_ray_args` wrote
(a JSON file), and prints one JSON line {"ms", "nodes", "infeasible"}.

    bench/.ray-venv/bin/python bench/planner_ray.py ARGS.json
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
from ray.autoscaler._private.resource_demand_scheduler import ResourceDemandScheduler
from ray.autoscaler.node_provider import NodeProvider


class StaticProvider(NodeProvider):
    """The existing nodes, as Ray's scheduler asks its provider about them (tags and IPs)."""

    def __init__(self, nodes: dict[str, dict[str, Any]]) -> None:
        super().__init__({}, "bench")
        self.nodes = nodes

    def non_terminated_nodes(self, tag_filters: dict[str, str]) -> list[str]:
        return list(self.nodes)

    def node_tags(self, node_id: str) -> dict[str, str]:
        return dict(self.nodes[node_id]["tags"])

    def internal_ip(self, node_id: str) -> str:
        return str(self.nodes[node_id]["ip"])

    def is_running(self, node_id: str) -> bool:
        return True

    def is_terminated(self, node_id: str) -> bool:
        return False


def add_busy_head(args: dict[str, Any]) -> None:
    """A running cluster has its head; without one Ray plans to launch it. Ours plans without a
    head node, so the head added here has nothing free: it changes no packing, only that."""
    head_type = args["constructor"]["head_node_type"]
    resources = args["constructor"]["node_types"][head_type]["resources"]
    ip = "10.255.255.254"
    args["provider_nodes"]["head-node"] = {
        "ip": ip, "tags": {"ray-node-type": "head", "ray-user-node-type": head_type}}
    call = args["get_nodes_to_launch"]
    call["nodes"].append("head-node")
    call["max_resources_by_ip"][ip] = dict(resources)
    call["unused_resources_by_ip"][ip] = {name: 0.0 for name in resources}


def main(path: str) -> int:
    with open(path) as f:
        args = json.load(f)
    call = args["get_nodes_to_launch"]
    add_busy_head(args)
    provider = StaticProvider(args["provider_nodes"])
    scheduler = ResourceDemandScheduler(provider, **args["constructor"])
    start = time.perf_counter()
    to_launch, infeasible = scheduler.get_nodes_to_launch(
        **call, node_availability_summary=NodeAvailabilitySummary(node_availabilities={}))
    elapsed = time.perf_counter() - start
    print(json.dumps({"ms": elapsed * 1e3, "nodes": dict(to_launch),
                      "infeasible": len(infeasible)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""idle_drain: drain workers idle longer than their type's idle_timeout_s (else the cluster's
idle timeout), longest idle first — never below the type's min_workers, never a node the pending
demand was packed onto, never the head or a node the autoscaler did not launch."""

from __future__ import annotations

from autoscaler.model import Node, TerminationCause
from autoscaler.policies.state import PlanState


def apply(state: PlanState) -> None:
    spare = {
        name: state.workers(name, current_only=True) - min(spec.min_workers, spec.max_workers)
        for name, spec in state.config.node_types.items()
    }
    for node in _idle_candidates(state):
        timeout_s = state.config.idle_timeout_for(node.node_type)
        idle_s = state.now - (node.idle_since or state.now)
        if idle_s < timeout_s:
            continue
        if spare.get(node.node_type, 0) <= 0:
            continue
        spare[node.node_type] -= 1
        reason = f"idle for {idle_s:.0f}s (idle timeout {timeout_s:g}s)"
        state.drain(node, reason, TerminationCause.IDLE)


def _idle_candidates(state: PlanState) -> list[Node]:
    managed = {i.instance_id for i in state.active_instances() if state.is_current(i)}
    nodes = [
        n
        for n in state.in_service.values()
        if n.idle_since is not None
        and n.instance_id in managed
        and not n.is_head
        and n.node_id not in state.needed_nodes
    ]
    return sorted(nodes, key=lambda n: (n.idle_since, n.node_id))

"""replace_outdated: workers whose launch config hash no longer matches their type (or whose type
left the config) are released: not-yet-running ones terminated, idle ones drained now, busy ones
left to finish their work and drained once idle (no work is lost to a config change).
min_workers, which runs first, already launched replacements for the ones min_workers needs."""

from __future__ import annotations

from autoscaler.model import InstanceInfo, TerminationCause
from autoscaler.policies.state import PlanState


def apply(state: PlanState) -> None:
    nodes = state.node_of_instance()
    for instance in sorted(state.active_instances(), key=lambda i: i.instance_id):
        if state.is_current(instance):
            continue
        why = _why(state, instance)
        node = nodes.get(instance.instance_id)
        if node is None or node.node_id not in state.in_service:
            reason = f"{why}; it has no node in service yet"
            state.terminate(instance.instance_id, reason, TerminationCause.OUTDATED)
        elif node.idle_since is not None:
            state.drain(node, f"{why}; node is idle", TerminationCause.OUTDATED)
        else:
            state.notes.append(f"node {node.node_id}: {why}; drained once its work finishes")


def _why(state: PlanState, instance: InstanceInfo) -> str:
    spec = state.spec(instance.node_type)
    if spec is None:
        return f"node type {instance.node_type!r} is no longer in the config"
    old = instance.launch_config_hash[:8] or "<none>"
    return f"launch config of {instance.node_type} changed ({old} -> {spec.launch_config_hash[:8]})"

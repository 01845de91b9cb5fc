"""max_caps: per-type max_workers, then the global max_workers. Launches above a cap are trimmed
newest first (demand before min_workers; demand, placement-group gangs included, is packed within
the caps already, so in practice only min_workers launches above the global cap are cut). A type
or cluster already above its cap (the config was lowered) sheds workers: not-yet-running
instances first, then idle nodes (longest idle first), then busy ones — draining lets their
running work finish."""

from __future__ import annotations

from autoscaler.model import Node, TerminationCause
from autoscaler.policies.state import PlanState


def apply(state: PlanState) -> None:
    for name, spec in sorted(state.config.node_types.items()):
        over = state.workers(name) + state.planned(name) - spec.max_workers
        if over > 0:
            cap = f"{name} max_workers={spec.max_workers}"
            _cap(state, over, cap, name, TerminationCause.OVER_TYPE_MAX)
    over = state.total_workers() + state.planned() - state.config.max_workers
    if over > 0:
        cap = f"cluster max_workers={state.config.max_workers}"
        _cap(state, over, cap, None, TerminationCause.OVER_CLUSTER_MAX)


def _cap(
    state: PlanState, over: int, cap: str, node_type: str | None, cause: TerminationCause
) -> None:
    trimmed = _trim(state, over, node_type)
    if trimmed:
        state.notes.append(f"{cap}: {trimmed} launch(es) not made")
    over -= trimmed
    if over > 0:
        _shed(state, over, f"over {cap}", node_type, cause)


def _trim(state: PlanState, over: int, node_type: str | None) -> int:
    trimmed = 0
    for intent in reversed(state.launches):
        if trimmed == over:
            break
        if node_type in (None, intent.node_type):
            cut = min(over - trimmed, intent.count)
            intent.count -= cut
            trimmed += cut
    return trimmed


def _shed(
    state: PlanState, over: int, reason: str, node_type: str | None, cause: TerminationCause
) -> None:
    pending = sorted(
        (i for i in state.pending_instances() if node_type in (None, i.node_type)),
        key=lambda i: (-i.launched_at, i.instance_id),
    )
    for instance in pending[:over]:
        state.terminate(instance.instance_id, f"{reason}; not running yet", cause)
        over -= 1
    for node in _sheddable_nodes(state, node_type)[:over]:
        state.drain(node, reason, cause)


def _sheddable_nodes(state: PlanState, node_type: str | None) -> list[Node]:
    managed = {i.instance_id for i in state.active_instances()}

    def order(node: Node) -> tuple[bool, float, str]:
        busy = node.idle_since is None
        return (busy, node.idle_since or 0.0, node.node_id)

    nodes = [
        n
        for n in state.in_service.values()
        if n.instance_id in managed and not n.is_head and node_type in (None, n.node_type)
    ]
    return sorted(nodes, key=order)

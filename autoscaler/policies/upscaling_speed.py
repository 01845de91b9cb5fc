"""upscaling_speed, with Ray's semantics: per node type, at most
max(5, int(upscaling_speed * max(running nodes of the type, 1))) nodes may be pending (launching
or installing) at once; launches for min_workers, request_resources() and placement groups are
never held back (Ray: "the user hints to scale up to this size immediately"). Held-back demand
launches are trimmed newest first and planned again on a later round."""

from __future__ import annotations

from autoscaler.policies.state import PlanState

# Ray's UPSCALING_INITIAL_NUM_NODES: a cluster at zero may still start this many at once.
INITIAL_PENDING = 5


def apply(state: PlanState) -> None:
    pending: dict[str, int] = {}
    for instance in state.pending_instances():
        pending[instance.node_type] = pending.get(instance.node_type, 0) + 1
    running = _running(state)
    for node_type in sorted({li.node_type for li in state.launches}):
        allowed = max(
            INITIAL_PENDING, int(state.config.upscaling_speed * max(running.get(node_type, 0), 1))
        )
        forced = sum(
            li.count for li in state.launches if li.node_type == node_type and li.bypass_speed
        )
        limit = max(allowed - pending.get(node_type, 0), forced)
        excess = state.planned(node_type) - limit
        if excess > 0:
            _trim(state, node_type, excess)
            state.notes.append(
                f"upscaling_speed={state.config.upscaling_speed:g}: {node_type} has "
                f"{running.get(node_type, 0)} running and {pending.get(node_type, 0)} pending, "
                f"so at most {allowed} may be pending; {excess} launch(es) held back"
            )


def _running(state: PlanState) -> dict[str, int]:
    counts: dict[str, int] = {}
    pending = {i.instance_id for i in state.pending_instances()}
    for instance in state.active_instances():
        if instance.instance_id not in pending:
            counts[instance.node_type] = counts.get(instance.node_type, 0) + 1
    return counts


def _trim(state: PlanState, node_type: str, excess: int) -> None:
    for intent in reversed(state.launches):
        if excess == 0:
            return
        if intent.node_type == node_type and not intent.bypass_speed:
            cut = min(excess, intent.count)
            intent.count -= cut
            excess -= cut

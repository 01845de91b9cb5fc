"""The autoscaler's decision: plan(snapshot, config, now) -> Plan. Pure: no I/O, no clock, no
randomness — the same inputs always give the same plan, so it is tested with exact expectations.

Policies run in this order, each reading the plan made so far (autoscaler/policies/):
  1. min_workers       launch up to each type's min_workers (up-to-date workers only)
  2. replace_outdated  release workers whose launch config hash changed (idle / not yet running)
  3. demand            request_resources() as if idle, placement groups, queued tasks and
                       actors: bin-packed onto free capacity, then onto new nodes of the best
                       type; infeasible shapes reported; unavailable types skipped
  4. upscaling_speed   hold back demand launches beyond Ray's pending-node allowance
  5. max_caps          per-type, then global max_workers (trim launches, shed excess workers)
  6. idle_drain        drain workers idle past their timeout (not below min, not if needed)
"""

from __future__ import annotations

from collections.abc import Callable

from autoscaler.model import ClusterSnapshot, Plan, ScalingConfig
from autoscaler.policies import (
    demand,
    idle_drain,
    max_caps,
    min_workers,
    replace_outdated,
    upscaling_speed,
)
from autoscaler.policies.state import PlanState

Policy = Callable[[PlanState], None]

POLICIES: tuple[Policy, ...] = (
    min_workers.apply,
    replace_outdated.apply,
    demand.apply,
    upscaling_speed.apply,
    max_caps.apply,
    idle_drain.apply,
)


def plan(snapshot: ClusterSnapshot, config: ScalingConfig, now: float) -> Plan:
    """Decide launches, drains and terminations for one round. Every action carries a reason."""
    state = PlanState.start(snapshot, config, now)
    for policy in POLICIES:
        policy(state)
    return state.to_plan()

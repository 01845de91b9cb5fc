"""min_workers: launch up to each type's min_workers (capped at its max_workers), counting only
workers with the current launch config, so outdated ones get their replacements here."""

from __future__ import annotations

from autoscaler.model import LaunchCause
from autoscaler.policies.state import PlanState


def apply(state: PlanState) -> None:
    for name, spec in sorted(state.config.node_types.items()):
        target = min(spec.min_workers, spec.max_workers)
        have = state.workers(name, current_only=True)
        missing = target - have
        if missing <= 0:
            continue
        until = state.unavailable_until(name)
        if until is not None:
            state.notes.append(
                f"min_workers: {missing} x {name} deferred: type unavailable until t={until:g}"
            )
            continue
        reason = f"min_workers={spec.min_workers} for {name}: {have} up-to-date worker(s)"
        replacing = min(missing, state.workers(name) - have)  # outdated workers still counted
        if replacing > 0:
            why = f"{reason}; replacing {replacing} outdated worker(s)"
            state.launch(name, replacing, why, LaunchCause.REPLACEMENT, bypass_speed=True)
        state.launch(name, missing - replacing, reason, LaunchCause.MIN_WORKERS, bypass_speed=True)

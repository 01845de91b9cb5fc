"""Human-readable texts for plan actions and notes (what `rayctl status` shows)."""

from __future__ import annotations

from collections.abc import Mapping

from autoscaler.model import Shape
from autoscaler.policies.binpack import TypeChooser
from autoscaler.policies.state import PlanState


def describe(contents: Mapping[Shape, int], limit: int = 3) -> str:
    """'12 x {CPU: 1}, 3 x {CPU: 2} and 2 more shapes' — biggest counts first."""
    ranked = sorted(contents.items(), key=lambda sc: (-sc[1], sc[0]))
    text = ", ".join(f"{count} x {shape}" for shape, count in ranked[:limit])
    extra = len(ranked) - limit
    return text + (f" and {extra} more shape(s)" if extra > 0 else "")


def waiting_reason(state: PlanState, chooser: TypeChooser, shape: Shape) -> str:
    """Why a feasible shape got no new node: the cluster or every fitting type is capped, or
    the fitting types are unavailable for now."""
    if state.total_workers() + state.planned() >= state.config.max_workers:
        return f"cluster at max_workers={state.config.max_workers}"
    parts = []
    for name in sorted(chooser.types):
        if not chooser.allowed(name, shape):
            continue
        until = state.unavailable_until(name)
        if until is not None:
            parts.append(f"{name} unavailable until t={until:g}")
        else:
            parts.append(f"{name} at max_workers={chooser.types[name].max_workers}")
    return "; ".join(parts) or "no node type fits it"

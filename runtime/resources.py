"""Resource arithmetic on plain dicts ({"CPU": 2.0, "GPU": 1.0, "memory": 1e9, "custom": 1.0})."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

EPS = 1e-9
Shape = Mapping[str, float]
MAX_AMOUNT = 1e15  # more than any node has of anything (memory in bytes included)


def check_amount(what: str, value: Any) -> float:
    """A resource amount as entered (an option, a bundle, a node's resources): a finite number
    from 0 to MAX_AMOUNT, or a one-line ValueError naming it, the value and the fix."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a number >= 0 such as 1 or 0.5, got {value!r}")
    amount = float(value)
    if math.isnan(amount) or not 0 <= amount <= MAX_AMOUNT:
        raise ValueError(
            f"{what} must be a finite number from 0 to {MAX_AMOUNT:g}, got {value!r}; "
            "use 0 for none"
        )
    return amount


def check_resources(what: str, resources: Any) -> dict[str, float]:
    """A `resources={...}` mapping: names that are non-empty strings, amounts as check_amount."""
    if not isinstance(resources, Mapping):
        raise ValueError(f"{what} must be a dict like {{'accelerator': 1}}, got {resources!r}")
    out = {}
    for name, amount in resources.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{what} has a resource name {name!r}: names are non-empty strings")
        out[name] = check_amount(f"{what}[{name!r}]", amount)
    return out


def check_retries(what: str, value: Any) -> int:
    """max_retries / max_restarts / max_task_retries: a whole number >= 0, or -1 for no limit."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < -1:
        raise ValueError(f"{what} must be a whole number >= 0, or -1 for no limit; got {value!r}")
    return int(value)


def fits(shape: Shape, available: Mapping[str, float]) -> bool:
    return all(
        amount <= available.get(name, 0.0) + EPS for name, amount in shape.items() if amount > 0
    )


def subtract(available: dict[str, float], shape: Shape) -> None:
    for name, amount in shape.items():
        available[name] = available.get(name, 0.0) - amount


def add(available: dict[str, float], shape: Shape) -> None:
    for name, amount in shape.items():
        available[name] = available.get(name, 0.0) + amount


def shape_key(shape: Shape) -> tuple[tuple[str, float], ...]:
    """A hashable, order-independent key for a shape (zero amounts dropped)."""
    return tuple(sorted((k, float(v)) for k, v in shape.items() if v > 0))


def task_shape(
    num_cpus: float | None,
    num_gpus: float | None,
    memory: float | None,
    resources: Mapping[str, float] | None,
    default_cpus: float,
) -> dict[str, float]:
    """The resource shape of a task or actor from its `remote`/`options` arguments."""
    shape: dict[str, float] = {
        "CPU": check_amount("num_cpus", default_cpus if num_cpus is None else num_cpus)
    }
    if num_gpus is not None:
        shape["GPU"] = check_amount("num_gpus", num_gpus)
    if memory is not None:
        shape["memory"] = check_amount("memory", memory)
    for name, amount in check_resources("resources", resources or {}).items():
        if name in ("CPU", "GPU", "memory"):
            raise ValueError(f"use num_cpus/num_gpus/memory instead of resources={{{name!r}: ...}}")
        shape[name] = amount
    return {k: v for k, v in shape.items() if v > 0}


def describe(shape: Shape) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shape.items())) + "}"

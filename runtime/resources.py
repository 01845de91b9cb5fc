"""Resource arithmetic on plain dicts ({"CPU": 2.0, "GPU": 1.0, "memory": 1e9, "custom": 1.0})."""

from __future__ import annotations

from collections.abc import Mapping

EPS = 1e-9
Shape = Mapping[str, float]


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
    shape: dict[str, float] = {"CPU": float(default_cpus if num_cpus is None else num_cpus)}
    if num_gpus:
        shape["GPU"] = float(num_gpus)
    if memory:
        shape["memory"] = float(memory)
    for name, amount in (resources or {}).items():
        if name in ("CPU", "GPU", "memory"):
            raise ValueError(f"use num_cpus/num_gpus/memory instead of resources={{{name!r}: ...}}")
        if amount < 0:
            raise ValueError(f"resource {name!r} must be >= 0, got {amount}")
        shape[name] = float(amount)
    return {k: v for k, v in shape.items() if v > 0}


def describe(shape: Shape) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shape.items())) + "}"

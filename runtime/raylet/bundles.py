"""Placement-group bundles on one node, two phase. Prepare reserves a bundle's resources; commit
turns them into bundle resources that tasks of the group ask for (named as in Ray:
`CPU_group_<index>_<pg>` for one bundle, `CPU_group_<pg>` for any, plus `bundle_group_*` markers so
zero-resource tasks can target a group); cancel gives everything back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runtime.resources import add, fits, subtract

MARKER = 1000.0  # capacity of the bundle_group_* marker resources


def group_resources(pg_id: str, index: int, resources: Mapping[str, float]) -> dict[str, float]:
    """The resources one committed bundle adds to its node."""
    out: dict[str, float] = {}
    for name, amount in resources.items():
        out[f"{name}_group_{index}_{pg_id}"] = amount
        out[f"{name}_group_{pg_id}"] = amount
    out[f"bundle_group_{index}_{pg_id}"] = MARKER
    out[f"bundle_group_{pg_id}"] = MARKER
    return out


def drop_group_resources(pg_id: str, *maps: dict[str, float]) -> None:
    """Remove a group's bundle resources (every `..._<pg_id>` key) from these resource maps."""
    suffix = f"_{pg_id}"
    for resources in maps:
        for key in [k for k in resources if k.endswith(suffix)]:
            del resources[key]


class Bundles:
    def __init__(self, total: dict[str, float], available: dict[str, float]) -> None:
        self.total = total
        self.available = available
        self.prepared: dict[str, list[tuple[int, dict[str, float]]]] = {}
        self.committed: dict[str, list[tuple[int, dict[str, float]]]] = {}

    def prepare(self, pg_id: str, bundles: Sequence[tuple[int, dict[str, float]]]) -> str:
        """Reserve the bundles' resources; '' on success, else why not."""
        if pg_id in self.prepared or pg_id in self.committed:
            return ""
        need: dict[str, float] = {}
        for _, resources in bundles:
            add(need, resources)
        if not fits(need, self.available):
            return f"not enough free resources for {len(bundles)} bundle(s) of {pg_id}"
        subtract(self.available, need)
        self.prepared[pg_id] = list(bundles)
        return ""

    def commit(self, pg_id: str) -> str:
        bundles = self.prepared.pop(pg_id, None)
        if bundles is None:
            return "" if pg_id in self.committed else f"{pg_id} was not prepared here"
        for index, resources in bundles:
            extra = group_resources(pg_id, index, resources)
            add(self.total, extra)
            add(self.available, extra)
        self.committed[pg_id] = bundles
        return ""

    def held(self) -> list[str]:
        """Groups with bundles prepared or committed here."""
        return [*self.prepared, *self.committed]

    def cancel(self, pg_id: str) -> None:
        """Give back a prepared or committed group (running tasks keep running; their bundle
        resources are gone)."""
        bundles = self.prepared.pop(pg_id, None)
        if bundles is None:
            bundles = self.committed.pop(pg_id, None)
            if bundles is None:
                return
            drop_group_resources(pg_id, self.total, self.available)
        for _, resources in bundles:
            add(self.available, resources)

"""Bin-packing of resource shapes: onto the free capacity of known nodes (FreePool) and onto new
nodes of the best node type (pack_new_nodes). Identical shapes are grouped and placed in bulk —
copies of a shape that fit a node = min over its resources of floor(free / need) — so the cost
grows with distinct shapes and node groups, not with the number of queued tasks."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from autoscaler.model import STANDARD_RESOURCES, NodeTypeSpec, Shape

EPS = 1e-9  # 0.3 / 0.1 is 2.9999999999999996 in floats: a tenth of a CPU must still fit thrice
UNBOUNDED = 10**12  # copies of an empty shape that "fit" anywhere
WASTE_BAND = 0.05  # type choice: wastes this close are a tie, broken by fewer nodes


def fit_count(free: Mapping[str, float], shape: Shape) -> int:
    """How many copies of `shape` fit into `free`."""
    copies = UNBOUNDED
    for name, need in shape.items:
        copies = min(copies, int(free.get(name, 0.0) / need + EPS))
        if copies == 0:
            return 0
    return copies


def subtract(free: dict[str, float], shape: Shape, copies: int) -> None:
    for name, need in shape.items:
        free[name] = max(free.get(name, 0.0) - need * copies, 0.0)


class RowKind(enum.StrEnum):
    NODE = "node"  # a node in service: `key` is its node id
    PENDING = "pending"  # an instance still coming up: `key` is its lifecycle instance id
    PLANNED = "planned"  # a node this plan launches: `key` is its node type
    GROUP_SPARE = "group_spare"  # what a placement group leaves free on nodes planned for it


class RowId(NamedTuple):
    """What one row of a FreePool stands for. A NamedTuple, not a frozen dataclass: a plan
    makes one per node twice over, and a tuple is built four times faster (1,000 nodes: ~3 ms
    of a ~30 ms plan)."""

    kind: RowKind
    key: str  # node id, instance id or node type (see RowKind)
    number: int = 0  # which of several planned nodes
    group: str = ""  # GROUP_SPARE: the placement group

    @classmethod
    def node(cls, node_id: str) -> RowId:
        return cls(RowKind.NODE, node_id)


class FreePool:
    """Free capacity of known nodes as a (nodes x resources) matrix; rows are tried in the order
    given (callers put busy nodes first, so idle ones stay drainable)."""

    def __init__(self, ids: Sequence[RowId], capacities: Sequence[Mapping[str, float]]) -> None:
        self.ids: list[RowId] = []
        self._col: dict[str, int] = {}
        self.free = np.zeros((0, 0))
        self.used = np.zeros(0, dtype=bool)
        self.add(ids, capacities)

    def add(self, ids: Sequence[RowId], capacities: Sequence[Mapping[str, float]]) -> None:
        """Append rows (e.g. nodes planned in an earlier pass)."""
        for capacity in capacities:
            for name in capacity:
                self._col.setdefault(name, len(self._col))
        rows = np.zeros((len(ids), len(self._col)))
        for i, capacity in enumerate(capacities):
            for name, amount in capacity.items():
                rows[i, self._col[name]] = amount
        old = np.zeros((len(self.ids), len(self._col)))
        old[:, : self.free.shape[1]] = self.free
        self.free = np.vstack([old, rows])
        self.used = np.concatenate([self.used, np.zeros(len(ids), dtype=bool)])
        self.ids.extend(ids)

    def _copies(self, shape: Shape) -> np.ndarray | None:
        """Copies of `shape` each row can take, or None if some resource is on no row."""
        copies: np.ndarray | None = None
        for name, need in shape.items:
            col = self._col.get(name)
            if col is None:
                return None
            fit = np.floor(self.free[:, col] / need + EPS)
            copies = fit if copies is None else np.minimum(copies, fit)
        return copies

    def place(self, shape: Shape, count: int) -> int:
        """First-fit `count` copies in bulk; returns how many were placed."""
        if count <= 0 or not self.ids:
            return 0
        if not shape.items:
            return count
        copies = self._copies(shape)
        if copies is None:
            return 0
        before = np.cumsum(copies) - copies
        take = np.clip(count - before, 0, copies)
        placed = int(take.sum())
        if placed:
            for name, need in shape.items:
                col = self._col[name]
                self.free[:, col] = np.maximum(self.free[:, col] - take * need, 0.0)
            self.used |= take > 0
        return placed

    def place_distinct(self, shapes: Sequence[Shape]) -> list[Shape]:
        """Put each shape on a different row (first fit); returns the shapes left over."""
        taken = np.zeros(len(self.ids), dtype=bool)
        left: list[Shape] = []
        for shape in shapes:
            copies = self._copies(shape) if shape.items else np.ones(len(self.ids))
            if copies is None:
                left.append(shape)
                continue
            candidates = np.flatnonzero((copies >= 1) & ~taken)
            if candidates.size == 0:
                left.append(shape)
                continue
            row = int(candidates[0])
            taken[row] = True
            self.used[row] = True
            for name, need in shape.items:
                col = self._col[name]
                self.free[row, col] = max(self.free[row, col] - need, 0.0)
        return left

    def used_nodes(self) -> list[str]:
        """Node ids of the nodes in service that the packing used."""
        return [row.key for row in self.used_ids() if row.kind is RowKind.NODE]

    def fits_any(self, shape: Shape) -> bool:
        copies = self._copies(shape) if shape.items else np.ones(1)
        return copies is not None and bool((copies >= 1).any())

    def used_ids(self) -> list[RowId]:
        return [self.ids[i] for i in np.flatnonzero(self.used)]

    def save(self) -> tuple[np.ndarray, np.ndarray, int]:
        return self.free.copy(), self.used.copy(), len(self.ids)

    def restore(self, saved: tuple[np.ndarray, np.ndarray, int]) -> None:
        free, used, rows = saved
        self.ids = self.ids[:rows]
        self.free = np.zeros((rows, len(self._col)))
        self.free[:, : free.shape[1]] = free
        self.used = used


# --- new nodes --------------------------------------------------------------------------------


@dataclass(slots=True)
class Budget:
    """How many more nodes may be launched: per type and for the whole cluster."""

    per_type: dict[str, int]
    total: int

    def room(self, node_type: str) -> int:
        return max(0, min(self.per_type.get(node_type, 0), self.total))

    def take(self, node_type: str, count: int) -> None:
        self.per_type[node_type] = self.per_type.get(node_type, 0) - count
        self.total -= count

    def copy(self) -> Budget:
        return Budget(dict(self.per_type), self.total)


class TypeChooser:
    """Ranks node types for a shape. Never a GPU type for work without GPUs while a type
    without GPUs fits it (even one at its cap: GPU nodes are too dear to spend on CPU work);
    then least waste; then fewest special resources the work does not ask for; then fewest
    nodes; then name. Waste is the share of the next node left idle, counting whole copies of
    the shape plus the remaining *volume* of smaller work of the same kind (CPU-only, GPU, each
    custom resource), since that work tops up the node: with lots of work left a big node fills
    as well as a small one, and needs fewer nodes."""

    def __init__(self, all_types: Sequence[NodeTypeSpec], launchable: Sequence[str]) -> None:
        self.types = {t.name: t for t in all_types}
        self.launchable = sorted(launchable)
        self.scale = _largest_amounts(all_types)
        self._allowed: dict[Shape, list[str]] = {}
        self._plain_fits: dict[Shape, bool] = {}

    def allowed(self, node_type: str, shape: Shape) -> bool:
        spec = self.types[node_type]
        if fit_count(spec.resources, shape) == 0:
            return False
        return not (spec.has_gpu and not shape.uses_gpu and self._plain_type_fits(shape))

    def _plain_type_fits(self, shape: Shape) -> bool:
        known = self._plain_fits.get(shape)
        if known is None:
            known = any(
                not t.has_gpu and t.max_workers > 0 and fit_count(t.resources, shape) > 0
                for t in self.types.values()
            )
            self._plain_fits[shape] = known
        return known

    def ranking(
        self,
        shape: Shape,
        count: int,
        volume: Mapping[str, float],
        filler: Mapping[str, float] | None = None,
    ) -> list[str]:
        """Launchable types allowed for `count` x `shape`, best first, given the `volume` of
        remaining work of its kind (resource -> total amount, this shape's included) and the
        `filler`: other work that may top up a node opened for it."""
        allowed = self._allowed.get(shape)
        if allowed is None:
            allowed = [t for t in self.launchable if self.allowed(t, shape)]
            self._allowed[shape] = allowed
        extra = filler or {}
        return sorted(
            allowed, key=lambda t: self._score(self.types[t], shape, count, volume, extra)
        )

    def _score(
        self,
        spec: NodeTypeSpec,
        shape: Shape,
        count: int,
        volume: Mapping[str, float],
        filler: Mapping[str, float],
    ) -> tuple[int, int, int, str]:
        cap = spec.resources
        per_node = fit_count(cap, shape)
        copies = min(count, per_node)
        nodes = math.ceil(count / per_node)
        wastes = []
        for name, need in shape.items:
            nodes = max(nodes, math.ceil(volume[name] / cap[name] - EPS))
            # the next node: this shape's copies (whole ones) plus smaller work that can top
            # it up (of its kind, and plain CPU work for the CPUs and memory of a special node)
            others = max(0.0, volume[name] + filler.get(name, 0.0) - count * need)
            wastes.append(1.0 - min(cap[name], copies * need + others) / cap[name])
        waste = sum(wastes) / len(wastes) if wastes else 0.0
        asked = {name for name, _ in shape.items}
        extra = sum(
            1
            for name, amount in cap.items()
            if amount > 0 and name not in STANDARD_RESOURCES and name not in asked
        )
        # waste within the same 5% band counts as equal; then fewer (bigger) nodes win
        return (math.floor(waste / WASTE_BAND + EPS), extra, nodes, spec.name)

    def size_key(self, shape: Shape) -> tuple[bool, float, int, tuple[tuple[str, float], ...]]:
        """First-fit-decreasing order: work on special resources first (so plain CPU work can
        top up the spare CPUs of the GPU nodes it opens), then biggest dominant share."""
        special = any(name not in STANDARD_RESOURCES for name, _ in shape.items)
        share = max((need / self.scale.get(name, need) for name, need in shape.items), default=0)
        return (not special, -share, -len(shape.items), shape.items)


def _largest_amounts(types: Sequence[NodeTypeSpec]) -> dict[str, float]:
    largest: dict[str, float] = {}
    for spec in types:
        for name, amount in spec.resources.items():
            largest[name] = max(largest.get(name, 0.0), amount)
    return {k: v for k, v in largest.items() if v > 0}


@dataclass(slots=True)
class NewNodes:
    counts: dict[str, int] = field(default_factory=dict)  # nodes to launch per type
    contents: dict[str, dict[Shape, int]] = field(default_factory=dict)  # for human reasons
    leftovers: list[tuple[str, dict[str, float], int]] = field(default_factory=list)
    unplaced: list[tuple[Shape, int]] = field(default_factory=list)

    def record(self, node_type: str, pattern: list[tuple[Shape, int]], nodes: int) -> None:
        self.counts[node_type] = self.counts.get(node_type, 0) + nodes
        held = self.contents.setdefault(node_type, {})
        for shape, take in pattern:
            held[shape] = held.get(shape, 0) + take * nodes


def pack_new_nodes(
    demand: Sequence[tuple[Shape, int]],
    chooser: TypeChooser,
    budget: Budget,
    *,
    one_per_node: bool = False,
) -> NewNodes:
    """Open new nodes for `demand` (first-fit decreasing). Each new node is opened for the
    largest shape left, of that shape's best type with room, and topped up with smaller shapes;
    then as many identical nodes as the remaining counts repeat that fill are added at once."""
    groups = sorted(_merge(demand), key=lambda sc: chooser.size_key(sc[0]))
    shapes = [s for s, _ in groups]
    counts = [c for _, c in groups]
    volume = _Volume(groups)
    allowed: dict[str, list[int]] = {}
    result = NewNodes()
    for top, shape in enumerate(shapes):
        while counts[top] > 0:
            node_type = _choose(chooser, budget, shape, counts[top], volume, one_per_node)
            if node_type is None:
                result.unplaced.append((shape, counts[top]))
                volume.remove(shape, counts[top])
                counts[top] = 0
                break
            if node_type not in allowed:
                # top-up takes any shape that fits: spare CPUs of a GPU node launched for GPU
                # work are paid for anyway (only *choosing* a GPU type for CPU work is avoided)
                resources = chooser.types[node_type].resources
                allowed[node_type] = [i for i, s in enumerate(shapes) if fit_count(resources, s)]
            indices = [top] if one_per_node else allowed[node_type]
            pattern, free = _fill(
                chooser.types[node_type].resources, indices, shapes, counts, one_per_node
            )
            repeat = min(min(counts[i] // take for i, take in pattern), budget.room(node_type))
            for i, take in pattern:
                counts[i] -= take * repeat
                volume.remove(shapes[i], take * repeat)
            budget.take(node_type, repeat)
            result.record(node_type, [(shapes[i], take) for i, take in pattern], repeat)
            result.leftovers.append((node_type, free, repeat))
    return result


def _choose(
    chooser: TypeChooser,
    budget: Budget,
    shape: Shape,
    count: int,
    volume: _Volume,
    one_per_node: bool,
) -> str | None:
    if one_per_node:  # every node holds one copy: judge the type on a single copy
        ranked = chooser.ranking(shape, 1, shape.as_dict())
    else:
        ranked = chooser.ranking(shape, count, volume.of(shape), volume.filler(shape))
    return next((t for t in ranked if budget.room(t)), None)


class _Volume:
    """Total remaining work per kind of shape (its non-standard resources: (), ("GPU",), ...)."""

    def __init__(self, groups: Sequence[tuple[Shape, int]]) -> None:
        self._by_kind: dict[tuple[str, ...], dict[str, float]] = {}
        for shape, count in groups:
            self.remove(shape, -count)

    @staticmethod
    def _kind(shape: Shape) -> tuple[str, ...]:
        return tuple(name for name, _ in shape.items if name not in STANDARD_RESOURCES)

    def remove(self, shape: Shape, count: int) -> None:
        totals = self._by_kind.setdefault(self._kind(shape), {})
        for name, need in shape.items:
            totals[name] = max(0.0, totals.get(name, 0.0) - need * count)

    def filler(self, shape: Shape) -> dict[str, float]:
        """Plain work (CPU, memory) that can top up a node opened for special work."""
        if not self._kind(shape):
            return {}
        return dict(self._by_kind.get((), {}))

    def of(self, shape: Shape) -> dict[str, float]:
        totals = self._by_kind.get(self._kind(shape), {})
        # never below the shape's own need: float drift must not make a shape "free"
        return {name: max(totals.get(name, 0.0), need) for name, need in shape.items}


def _fill(
    resources: Mapping[str, float],
    indices: list[int],
    shapes: list[Shape],
    counts: list[int],
    one_only: bool,
) -> tuple[list[tuple[int, int]], dict[str, float]]:
    """Fill one fresh node: (group index, copies) taken in order, and what is left free."""
    free = dict(resources)
    pattern: list[tuple[int, int]] = []
    for i in indices:
        if counts[i] == 0:
            continue
        take = 1 if one_only else min(counts[i], fit_count(free, shapes[i]))
        if take:
            subtract(free, shapes[i], take)
            pattern.append((i, take))
    return pattern, free


def _merge(demand: Sequence[tuple[Shape, int]]) -> list[tuple[Shape, int]]:
    merged: dict[Shape, int] = {}
    for shape, count in demand:
        if count > 0:
            merged[shape] = merged.get(shape, 0) + count
    return list(merged.items())

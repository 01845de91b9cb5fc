"""The dashboard's plots over time, recorded on the head so that a page opened later shows the
past: every STEP_S the web service samples the cluster (nodes by type, pending and infeasible
demand, CPU / GPU / memory / object store in use and in total) into a bounded ring in Redis,
one hour at that step, and each FINE_PER_COARSE samples also the window's mean into a second ring,
one day at five minutes. Readers get both, oldest first.

Redis keys (this module owns them; prefix `rayctl:<cluster_id>:web:`): `series:fine` and
`series:coarse`, lists of JSON samples, newest first: {"t": unix s, "v": {name: number}}.
"""

from __future__ import annotations

import enum
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import redis

from autoscaler.status import ClusterStatus
from autoscaler.web.state import ClusterReader, GcsTables
from runtime.gcs.schema import cluster_prefix
from runtime.protocol.states import NodeState

STEP_S = 10.0
FINE_KEEP = 360  # one hour at STEP_S
FINE_PER_COARSE = 30  # five minutes
COARSE_KEEP = 288  # one day at five minutes
RESOURCES = ("CPU", "GPU", "memory")


class Window(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"


class SeriesKeys:
    def __init__(self, cluster_id: str) -> None:
        prefix = cluster_prefix(cluster_id) + "web:"
        self.fine = prefix + "series:fine"
        self.coarse = prefix + "series:coarse"


def sample(tables: GcsTables, stores: list[tuple[Any, Any]],
           status: ClusterStatus | None) -> dict[str, float]:
    """One point of every series, from one read of the cluster."""
    values: dict[str, float] = {}
    alive = [n for n in tables.nodes if NodeState.from_wire(n.state) is not NodeState.DEAD]
    for node_type, n in Counter(_type_of(n) for n in alive).items():
        values[f"nodes:{node_type}"] = n
    values["nodes"] = len(alive)
    for name in RESOURCES:
        total = sum(n.total.get(name, 0.0) for n in alive)
        free = sum(n.available.get(name, 0.0) for n in alive)
        values[f"{name}:total"] = total
        values[f"{name}:used"] = max(total - free, 0.0)
    pending = infeasible = 0
    for entries in tables.load.values():
        for entry in entries:
            if entry.infeasible:
                infeasible += entry.count
            else:
                pending += entry.count
    values["demand:pending"] = pending
    values["demand:infeasible"] = infeasible
    values["store:used"] = sum(s.object_store_used for _, s in stores)
    values["store:capacity"] = sum(s.object_store_capacity for _, s in stores)
    if status is not None:
        values["instances:pending"] = len(status.pending)
    return values


def _type_of(node: Any) -> str:
    if node.node_type:
        return str(node.node_type)
    return "head" if node.is_head else "other"


class SeriesStore:
    def __init__(self, r: redis.Redis, cluster_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.r, self.keys, self.clock = r, SeriesKeys(cluster_id), clock

    def record(self, values: Mapping[str, float]) -> None:
        """Add a sample; when it starts a new coarse window, also the mean of the last one."""
        now = self.clock()
        point = json.dumps({"t": round(now, 3), "v": dict(values)}, separators=(",", ":"))
        last = self.r.lindex(self.keys.fine, 0)
        pipe = self.r.pipeline()
        pipe.lpush(self.keys.fine, point)
        pipe.ltrim(self.keys.fine, 0, FINE_KEEP - 1)
        step = STEP_S * FINE_PER_COARSE
        if last is not None and int(json.loads(last)["t"] // step) != int(now // step):
            window_start = (now // step - 1) * step
            finished = [p for p in (json.loads(raw) for raw in self.r.lrange(
                self.keys.fine, 0, FINE_PER_COARSE)) if window_start <= p["t"] < window_start + step]
            if finished:
                pipe.lpush(self.keys.coarse, json.dumps(
                    {"t": window_start, "v": _mean([p["v"] for p in finished])},
                    separators=(",", ":")))
                pipe.ltrim(self.keys.coarse, 0, COARSE_KEEP - 1)
        pipe.execute()

    def read(self, window: Window) -> list[dict[str, Any]]:
        key = self.keys.fine if window is Window.HOUR else self.keys.coarse
        return [json.loads(raw) for raw in reversed(self.r.lrange(key, 0, -1))]


def _mean(points: list[dict[str, float]]) -> dict[str, float]:
    names = {name for p in points for name in p}
    return {name: round(sum(p.get(name, 0.0) for p in points) / len(points), 3)
            for name in sorted(names)}


def record_once(reader: ClusterReader, store: SeriesStore,
                status: Callable[[], ClusterStatus | None]) -> None:
    tables = reader.tables()
    store.record(sample(tables, reader.store_stats(tables.nodes), status()))

"""The other nodes as this raylet knows them: the GCS's view rows (whole when the sync stream
opens, then the rows that changed; runtime/gcs/node_sync.py), and the working copy that scheduling
reads and counts spills in. A spill is counted against the target until the next update, or for
SPILL_MEMORY_S at most (a short task is back before its node's next report says so)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from runtime.protocol.common_pb2 import NodeInfo
from runtime.protocol.gcs_pb2 import ViewUpdate

SPILL_MEMORY_S = 0.5


class ClusterView:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rows: dict[str, NodeInfo] = {}
        self._working: list[NodeInfo] = []
        self._built_at = -SPILL_MEMORY_S - 1.0

    def apply(self, update: ViewUpdate) -> None:
        """A whole view (`full`), or what changed since the last update: whole rows, and the
        free amounts of nodes whose free resources alone changed."""
        if update.full:
            self._rows = {}
        for row in update.nodes:
            if row.state == NodeInfo.DEAD:
                self._rows.pop(row.node_id, None)
            else:
                self._rows[row.node_id] = row
        for amounts in update.available:
            known = self._rows.get(amounts.node_id)
            if known is not None:
                known.available.update(amounts.changed)
        self._built_at = -SPILL_MEMORY_S - 1.0

    def replace(self, rows: Iterable[NodeInfo]) -> None:
        """Every live node, as GetNodes gave them (a node this raylet was asked about)."""
        self._rows = {row.node_id: row for row in rows if row.state != NodeInfo.DEAD}
        self._built_at = -SPILL_MEMORY_S - 1.0

    def nodes(self) -> list[NodeInfo]:
        """The working copy: rows scheduling may mark spills in (fresh after an update)."""
        now = self._clock()
        if now - self._built_at > SPILL_MEMORY_S:
            working = []
            for row in self._rows.values():
                copy = NodeInfo()
                copy.CopyFrom(row)
                working.append(copy)
            self._working = working
            self._built_at = now
        return self._working

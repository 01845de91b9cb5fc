"""Where a lease request should run: here, or spilled back to another node. A pure function of
the request, this node's live resources and the cluster view the GCS sends with each heartbeat.

Strategies (as in Ray): DEFAULT packs onto this node while it has room, then spreads to the node
with the most free CPU; SPREAD goes round-robin over the nodes with room (in node-id order, from
the one after the previous SPREAD pick); node affinity goes to one node
(soft: fall back to DEFAULT when that node is gone; hard: fail). Placement groups need nothing
here: their bundles are resources (see runtime/raylet/bundles.py)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.protocol.common_pb2 import NodeInfo
from runtime.resources import fits
from runtime.util.scheduling_strategies import SPREAD


class DecisionKind(enum.StrEnum):
    LOCAL = "local"  # queue it here (granted when it fits)
    SPILL = "spill"  # send the submitter to `Decision.node`
    ERROR = "error"  # it can never run as asked: `Decision.error` says why


@dataclass(frozen=True, slots=True)
class Decision:
    kind: DecisionKind
    node: Any = None  # NodeInfo of the spill target
    error: str = ""


LOCAL = Decision(DecisionKind.LOCAL)


def choose(
    shape: Mapping[str, float],
    strategy: Any,
    local_id: str,
    local_total: Mapping[str, float],
    local_available: Mapping[str, float],
    view: Sequence[Any],
    allow_spill: bool,
    spread_after: str = "",
) -> Decision:
    """Decide for one lease request. `view` holds the other nodes' NodeInfo (state ALIVE);
    `spread_after` is the node the previous SPREAD request went to."""
    others = [n for n in view if n.node_id != local_id and n.state == NodeInfo.ALIVE]
    if isinstance(strategy, dict) and strategy.get("node_id"):
        return _affinity(shape, strategy, local_id, local_total, local_available, others, allow_spill)
    if not allow_spill:
        return LOCAL
    if strategy == SPREAD:
        return _spread(shape, local_id, local_total, local_available, others, spread_after)
    return _default(shape, local_total, local_available, others)


def _default(shape: Mapping[str, float], local_total: Mapping[str, float],
             local_available: Mapping[str, float], others: Sequence[Any]) -> Decision:
    if fits(shape, local_available):
        return LOCAL
    with_room = [n for n in others if fits(shape, n.available)]
    if with_room:
        return Decision(DecisionKind.SPILL, max(with_room, key=_free_cpu_fraction))
    if fits(shape, local_total):
        return LOCAL  # busy here, nobody has room: wait here
    could_fit = [n for n in others if fits(shape, n.total)]
    if could_fit:
        return Decision(DecisionKind.SPILL, could_fit[0])
    return LOCAL  # no node can ever fit it: queued here as infeasible demand


def _spread(shape: Mapping[str, float], local_id: str, local_total: Mapping[str, float],
            local_available: Mapping[str, float], others: Sequence[Any], after: str) -> Decision:
    """Round-robin (as Ray's spread policy): over the nodes with room, else over the nodes it
    fits at all (it waits there), else here (infeasible demand)."""
    for local_fits, fits_node in ((fits(shape, local_available), lambda n: fits(shape, n.available)),
                                  (fits(shape, local_total), lambda n: fits(shape, n.total))):
        ring: list[tuple[str, Any]] = [(n.node_id, n) for n in others if fits_node(n)]
        if local_fits:
            ring.append((local_id, None))
        if ring:
            ring.sort(key=lambda c: c[0])
            node = next((n for node_id, n in ring if node_id > after), ring[0][1])
            return LOCAL if node is None else Decision(DecisionKind.SPILL, node)
    return LOCAL


def _affinity(shape: Mapping[str, float], strategy: dict[str, Any], local_id: str,
              local_total: Mapping[str, float], local_available: Mapping[str, float],
              others: Sequence[Any], allow_spill: bool) -> Decision:
    target = strategy["node_id"]
    if target == local_id:
        return LOCAL
    node = next((n for n in others if n.node_id == target), None)
    if node is not None:
        return Decision(DecisionKind.SPILL, node) if allow_spill else LOCAL
    if strategy.get("soft"):
        return _default(shape, local_total, local_available, others) if allow_spill else LOCAL
    return Decision(DecisionKind.ERROR,
                    error=f"node {target} is not alive (NodeAffinitySchedulingStrategy with soft=False)")


def _free_cpu_fraction(node: Any) -> float:
    total = node.total.get("CPU", 0.0)
    return node.available.get("CPU", 0.0) / total if total else 0.0

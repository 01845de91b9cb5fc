"""Draining through the GCS before a node is terminated. The autoscaler's side of the drain
protocol (the GCS side: runtime/gcs/drain.py, the raylet's: runtime/raylet/drain.py):

  1. request_drain(node) answers at once: accepted, or rejected with a reason (an idle-only
     drain of a node that is busy again; a node holding the only copy of objects in use).
  2. An accepted node is DRAINING: it takes no new work; what runs finishes in the background.
  3. The GCS reports each draining node's progress with its node row (`NodeDrain`): what still
     holds it, and `drained` once nothing does. The autoscaler terminates it then, or when its
     own drain timeout passes (lifecycle `Timeouts.drain_s`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc
import structlog

from runtime.grpc_auth import open_channel
from runtime.protocol import common_pb2, gcs_pb2, gcs_pb2_grpc
from runtime.tls import ClusterTls

log = structlog.get_logger(__name__)

DRAIN_CALL_TIMEOUT_S = 10.0  # the GCS answers at once; this only bounds a GCS in trouble


@dataclass(frozen=True, slots=True)
class DrainAnswer:
    accepted: bool
    reason: str = ""  # why it was rejected (or what the GCS said on accepting)


@dataclass(frozen=True, slots=True)
class NodeDrain:
    """A draining node's progress, as the GCS reports it with the node."""

    reason: str  # why it drains (the autoscaler's reason, e.g. "idle for 300 s")
    started_at: float  # unix seconds
    drained: bool  # nothing holds the node any more: it may be terminated
    leases: int = 0  # tasks still running there
    actors: int = 0  # actors still alive there
    objects: int = 0  # primary copies of objects whose owners are alive

    def holders(self) -> str:
        """What holds the node, for `rayctl status -v`: '2 running tasks, 1 actor'."""
        parts = [
            _count(self.leases, "running task"),
            _count(self.actors, "actor"),
            _count(self.objects, "object with a live owner", "objects with live owners"),
        ]
        return ", ".join(p for p in parts if p) or "nothing"


def _count(n: int, one: str, many: str = "") -> str:
    if n <= 0:
        return ""
    return f"1 {one}" if n == 1 else f"{n} {many or one + 's'}"


class NodeDrainer(Protocol):
    """Asks the GCS to drain a node. Never blocks on the drain itself."""

    def request_drain(
        self, node_id: str, *, reason: str, idle_only: bool, deadline_s: float = 0.0
    ) -> DrainAnswer:
        """Answers at once. `idle_only`: reject unless the node is idle right now (an idle
        drain racing new work). `deadline_s` > 0: the node counts as drained after that long
        even if work still runs (0: no deadline; the autoscaler's drain timeout decides)."""
        ...


class AcceptingDrainer:
    """For a cluster without a GCS to ask (planner scenarios): every drain is accepted."""

    def request_drain(
        self, node_id: str, *, reason: str, idle_only: bool, deadline_s: float = 0.0
    ) -> DrainAnswer:
        return DrainAnswer(True)


class GcsDrainer:
    def __init__(self, gcs_address: str, token: str, tls: ClusterTls | None = None) -> None:
        self._channel = open_channel(gcs_address, token, tls=tls)
        self._stub = gcs_pb2_grpc.GcsStub(self._channel)

    def request_drain(
        self, node_id: str, *, reason: str, idle_only: bool, deadline_s: float = 0.0
    ) -> DrainAnswer:
        request = gcs_pb2.DrainNodeRequest(
            node_id=node_id, reason=reason, idle_only=idle_only, deadline_s=deadline_s
        )
        try:
            reply = self._stub.DrainNode(request, timeout=DRAIN_CALL_TIMEOUT_S)
        except grpc.RpcError as exc:
            log.warning("drain call failed; keeping the node", node_id=node_id,
                        error=exc.details())
            return DrainAnswer(False, f"the GCS did not answer: {exc.details()}")
        return DrainAnswer(bool(reply.accepted), reply.reason)


def drain_from_proto(drain: common_pb2.NodeDrain) -> NodeDrain:
    """A node row's drain progress (NodeInfo.drain) as the autoscaler's value."""
    return NodeDrain(
        reason=drain.reason,
        started_at=drain.started_at,
        drained=drain.drained,
        leases=drain.leases,
        actors=drain.actors,
        objects=drain.objects,
    )

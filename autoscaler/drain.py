"""Draining through the GCS before a node is terminated: the node takes no new work, finishes
what runs (up to a deadline), and refuses while it holds the only copy of objects still in use."""

from __future__ import annotations

import grpc
import structlog

from runtime.auth import call_metadata
from runtime.protocol import gcs_pb2, gcs_pb2_grpc

log = structlog.get_logger(__name__)


class GcsDrainer:
    def __init__(self, gcs_address: str, token: str, deadline_s: float = 30.0) -> None:
        self._channel = grpc.insecure_channel(gcs_address)
        self._stub = gcs_pb2_grpc.GcsStub(self._channel)
        self._md = call_metadata(token)
        self.deadline_s = deadline_s

    def drain(self, node_id: str, reason: str) -> bool:
        """True once the node took no new work and finished what ran: it may be terminated."""
        request = gcs_pb2.DrainNodeRequest(node_id=node_id, deadline_s=self.deadline_s, reason=reason)
        try:
            reply = self._stub.DrainNode(request, metadata=self._md, timeout=self.deadline_s + 15)
        except grpc.RpcError as exc:
            log.warning("drain call failed; keeping the node", node_id=node_id, error=exc.details())
            return False
        if not reply.drained:
            log.info("node not drained; keeping it", node_id=node_id, reason=reply.reason)
        return bool(reply.drained)

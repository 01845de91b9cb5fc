"""Small synchronous GCS queries used before a core worker exists (joining a cluster)."""

from __future__ import annotations

import grpc

from runtime.auth import call_metadata
from runtime.constants import GRPC_CHANNEL_OPTIONS
from runtime.protocol import gcs_pb2, gcs_pb2_grpc


def local_raylet_port(gcs_address: str, token: str, timeout_s: float = 10.0) -> int:
    """The node-local port of a live raylet on this machine (the head's when there are several)."""
    with grpc.insecure_channel(gcs_address, options=GRPC_CHANNEL_OPTIONS) as channel:
        stub = gcs_pb2_grpc.GcsStub(channel)
        try:
            reply = stub.GetNodes(gcs_pb2.Empty(), metadata=call_metadata(token), timeout=timeout_s)
        except grpc.RpcError as exc:
            raise ConnectionError(
                f"cannot reach the cluster at {gcs_address}: {exc.details()}"
            ) from None
    host = gcs_address.rpartition(":")[0]
    alive = [n for n in reply.nodes if n.state == "ALIVE"]
    local = [n for n in alive if n.address == host] or alive
    if not local:
        raise ConnectionError(f"the cluster at {gcs_address} has no live node")
    local.sort(key=lambda n: not n.is_head)
    return int(local[0].local_port)

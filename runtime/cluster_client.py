"""Small synchronous GCS queries used before a core worker exists (joining a cluster)."""

from __future__ import annotations

import ipaddress
import socket

import grpc
import psutil

from runtime.grpc_auth import open_channel
from runtime.protocol import gcs_pb2, gcs_pb2_grpc
from runtime.protocol.common_pb2 import NodeInfo
from runtime.tls import ClusterTls, speaks_tls


def local_raylet(gcs_address: str, token: str, timeout_s: float = 10.0,
                 tls: ClusterTls | None = None) -> tuple[str, int]:
    """The address and node-local port of a live raylet on this machine, for a driver to bind
    and join: a node whose address is one of this machine's (the head's when there are
    several: one machine, many raylets), else the node at the GCS's host."""
    with open_channel(gcs_address, token, tls=tls) as channel:
        stub = gcs_pb2_grpc.GcsStub(channel)
        try:
            reply = stub.GetNodes(gcs_pb2.Empty(), timeout=timeout_s)
        except grpc.RpcError as exc:
            if tls is None and exc.code() == grpc.StatusCode.UNAVAILABLE and speaks_tls(gcs_address):
                raise ConnectionError(
                    f"the cluster at {gcs_address} runs TLS and this process has only its token: "
                    "use the head's whole token file, which carries the cluster's certificates "
                    "(RAYCTL_TOKEN_FILE or --token-file)"
                ) from None
            raise ConnectionError(
                f"cannot reach the cluster at {gcs_address}: {exc.details()}"
            ) from None
    host = gcs_address.rpartition(":")[0]
    alive = [n for n in reply.nodes if n.state == NodeInfo.ALIVE]
    mine = machine_addresses()
    # A driver on a worker host must join that host's raylet, not the head's at the GCS
    # address (it could neither bind that address nor share that node's memory).
    local = ([n for n in alive if _ip_of(n.address) in mine]
             or [n for n in alive if n.address == host] or alive)
    if not local:
        raise ConnectionError(f"the cluster at {gcs_address} has no live node")
    local.sort(key=lambda n: (n.address != host, not n.is_head))
    return local[0].address, int(local[0].local_port)


def machine_addresses() -> set[str]:
    """Every IP address of this machine's interfaces (of its network namespace)."""
    families = (socket.AF_INET, socket.AF_INET6)
    return {a.address for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family in families}


def _ip_of(address: str) -> str:
    """`address` as an IP: nodes may be named by host name (on-prem `worker_ips: [host1]`)."""
    try:
        ipaddress.ip_address(address)
        return address
    except ValueError:
        pass
    try:
        return socket.gethostbyname(address)
    except OSError:
        return address

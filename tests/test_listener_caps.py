"""Caps before authentication on a real raylet's listeners (issue 13, item 1). What used to happen
on the node-local port: a 0xFFFFFFFF length then 256 MiB without a token grew the raylet from 43
to 299 MiB, and 2,000 idle sockets were all still open 17 s later."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import psutil
import pytest

from runtime.cluster_utils import Cluster
from runtime.listener_caps import HANDSHAKE_TIMEOUT_S, MAX_UNAUTHENTICATED
from tests.polling import wait_for

MIB = 1024**2


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster({"num_cpus": 1})
    try:
        c.connect()
        yield c
    finally:
        c.shutdown()


def _raylet(cluster: Cluster) -> psutil.Process:
    return psutil.Process(cluster.head.procs[-1].pid)


def _ports(cluster: Cluster) -> dict[str, int]:
    import runtime as rt
    from runtime.api import _core
    from runtime.protocol import gcs_pb2

    [node] = [n for n in _core().gcs_call("GetNodes", gcs_pb2.Empty()).nodes]
    assert node.node_id == rt.get_runtime_context().get_node_id()
    return {"node-local": cluster.head.raylet_local_port, "data plane": node.data_port}


def _still_works() -> None:
    import runtime as rt

    @rt.remote
    def ping() -> str:
        return "pong"

    assert rt.get(ping.remote(), timeout=30) == "pong"


@pytest.mark.parametrize("port_name", ["node-local", "data plane"])
def test_an_endless_frame_without_a_token_is_cut_off(cluster: Cluster, port_name: str) -> None:
    raylet = _raylet(cluster)
    rss_before = raylet.memory_info().rss
    port = _ports(cluster)[port_name]
    sent = 0
    chunk = b"\0" * MIB
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(b"\xff\xff\xff\xff")
            while sent < 256 * MIB:
                sock.sendall(chunk)
                sent += len(chunk)
            cut_off = False
        except OSError:  # reset or broken pipe: the raylet closed it
            cut_off = True
    assert cut_off, f"the raylet read all {sent // MIB} MiB of an unauthenticated frame"
    grown = (raylet.memory_info().rss - rss_before) / MIB
    print(f"{port_name}: cut off after {sent // MIB} MiB sent in "
          f"{time.monotonic() - started:.2f}s; raylet grew {grown:.1f} MiB")
    assert grown < 8
    _still_works()


def test_idle_sockets_are_capped_and_closed_after_the_deadline(cluster: Cluster) -> None:
    raylet = _raylet(cluster)
    ports = _ports(cluster)
    fds_before = raylet.num_fds()
    socks = [
        socket.create_connection(("127.0.0.1", port), timeout=10)
        for port in ports.values()
        for _ in range(500)
    ]
    try:
        time.sleep(0.5)  # (let the raylet accept them all; the cap applies as it does)
        held = raylet.num_fds() - fds_before
        assert held <= len(ports) * MAX_UNAUTHENTICATED + 16, f"{held} idle connections held"
        _still_works()  # a real driver's calls still go through meanwhile
        wait_for(
            lambda: raylet.num_fds() - fds_before <= 8,
            HANDSHAKE_TIMEOUT_S + 5,
            "the idle connections to be closed after the handshake deadline",
        )
        print(f"500 idle sockets on each of {', '.join(ports)}: at most {held} held in all, "
              f"every one closed within {HANDSHAKE_TIMEOUT_S:g} s")
    finally:
        for sock in socks:
            sock.close()


def _gcs(cluster: Cluster) -> psutil.Process:
    [gcs] = [psutil.Process(p.pid) for p in cluster.head.procs
             if "runtime.gcs.server" in psutil.Process(p.pid).cmdline()]
    return gcs


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def test_the_gcs_grpc_port_closes_idle_connections_and_refuses_giant_unproven_calls(
    cluster: Cluster,
) -> None:
    """The GCS's gRPC port: before, 500 idle sockets were all open 25 s later. gRPC core does
    the framing there, so the caps are its own: a handshake deadline, an idle timeout and
    message and header maxima (runtime/listener_caps.GRPC_SERVER_OPTIONS)."""
    import grpc

    from runtime.listener_caps import GRPC_IDLE_S
    from runtime.protocol import gcs_pb2

    gcs = _gcs(cluster)
    host, _, port = cluster.head.gcs_address.rpartition(":")
    fds_before, rss_before = gcs.num_fds(), gcs.memory_info().rss
    silent = [socket.create_connection((host, int(port)), timeout=10) for _ in range(200)]
    http2 = [socket.create_connection((host, int(port)), timeout=10) for _ in range(200)]
    started = time.monotonic()
    try:
        for sock in http2:  # an HTTP/2 client that never makes a call
            sock.sendall(HTTP2_PREFACE)
        wait_for(lambda: gcs.num_fds() - fds_before >= 380, 5, "the GCS to accept them")
        wait_for(lambda: gcs.num_fds() - fds_before <= 200 + 8, HANDSHAKE_TIMEOUT_S + 5,
                 "the silent connections to be closed after the handshake deadline")
        silent_closed = time.monotonic() - started
        _still_works()
        wait_for(lambda: gcs.num_fds() - fds_before <= 8, GRPC_IDLE_S + 10,
                 "the connections that make no call to be closed after the idle timeout")
        print(f"GCS: 200 silent sockets closed in {silent_closed:.1f} s, 200 HTTP/2 ones "
              f"without a call in {time.monotonic() - started:.1f} s")
    finally:
        for sock in silent + http2:
            sock.close()
    with grpc.insecure_channel(cluster.head.gcs_address,
                               options=[("grpc.max_send_message_length", 300 * MIB)]) as channel:
        put = channel.unary_unary("/rayctl.Gcs/KvPut",
                                  request_serializer=gcs_pb2.KvRequest.SerializeToString,
                                  response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as refused:
            put(gcs_pb2.KvRequest(ns="x", key="k", value=b"x" * (200 * MIB)), timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    grown = (gcs.memory_info().rss - rss_before) / MIB
    print(f"GCS: a 200 MiB call without a proof refused; the GCS grew {grown:.1f} MiB")
    assert grown < 32
    _still_works()

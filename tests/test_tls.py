"""TLS on every channel (issue 13): a cluster CA and a node certificate under a fixed name, kept in
the token file; the direct transport, the object data plane and gRPC each run inside TLS when
given the cluster's material, and a cluster started with tls=True uses it everywhere. A recording
relay between two ends shows what crosses the network."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from runtime import transport
from runtime.tls import TLS_NAME, ClusterTls, create_cluster_tls

TOKEN = "9" * 64
SECRET = b"the-payload-nobody-on-the-path-may-read"


class Relay:
    """A TCP hop between client and server that forwards both ways and keeps what it saw."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.seen = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    self.seen += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()
        for s in self._socks:
            s.close()


@pytest.fixture(scope="module")
def tls() -> ClusterTls:
    return create_cluster_tls()


@pytest.fixture(scope="module")
def other_tls() -> ClusterTls:
    return create_cluster_tls()


def test_the_material_rides_in_the_token_file_and_names_the_cluster_not_an_address(
    tls: ClusterTls, tmp_path: Path,
) -> None:
    from cryptography import x509

    from runtime.auth import create_token_file, read_credentials

    path = str(tmp_path / "token")
    token = create_token_file(path, tls)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = Path(path).read_text()
    assert text.count("BEGIN CERTIFICATE") == 2 and text.count("PRIVATE KEY-----") == 2, (
        "the CA certificate, the node certificate and the node key; never the CA key"
    )
    credentials = read_credentials(path)
    assert credentials.token == token and credentials.tls is not None
    assert credentials.tls.ca_pem == tls.ca_pem and credentials.tls.key_pem == tls.key_pem
    cert = x509.load_pem_x509_certificate(tls.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [TLS_NAME]
    # a token file cut short says what is missing and how to fix it, in one line
    Path(path).write_text(text[: text.index("-----BEGIN PRIVATE KEY")])
    with pytest.raises(ValueError, match="copy the head's token file whole") as info:
        read_credentials(path)
    assert "\n" not in str(info.value)


@pytest.fixture
def relay_to() -> Iterator:
    relays: list[Relay] = []

    def make(port: int) -> Relay:
        relays.append(Relay(("127.0.0.1", port)))
        return relays[-1]

    yield make
    for relay in relays:
        relay.close()


def test_the_direct_transport_runs_inside_tls(tls, other_tls, relay_to) -> None:
    async def scenario() -> None:
        server = await transport.serve("127.0.0.1", 0, TOKEN, lambda c, m, p: p, tls=tls)
        port = server.sockets[0].getsockname()[1]
        relay = relay_to(port)
        try:
            conn = await transport.connect(relay.address, TOKEN, timeout_s=5, tls=tls)
            assert await conn.request("echo", SECRET) == SECRET
            conn.close()
            # a client holding another cluster's CA does not accept this server
            with pytest.raises(ssl.SSLCertVerificationError):
                await transport.connect(f"127.0.0.1:{port}", TOKEN, timeout_s=5, tls=other_tls)
            # nor does a client without TLS get anywhere
            with pytest.raises((ConnectionError, OSError, asyncio.TimeoutError)):
                await transport.connect(f"127.0.0.1:{port}", TOKEN, timeout_s=2)
        finally:
            server.close()
            await server.wait_closed()
        assert SECRET not in relay.seen and b"RAYCTL/1" not in relay.seen
        assert len(relay.seen) > len(SECRET)

    asyncio.run(scenario())


def test_object_transfer_runs_inside_tls(tls, other_tls, tmp_path: Path, relay_to) -> None:
    from runtime import shm
    from runtime.exceptions import ObjectLostError
    from runtime.object_store import ObjectStore
    from runtime.raylet.transfer import ObjectTransfer

    def node(name: str, tls_of_node: ClusterTls, peer: list[str]) -> ObjectTransfer:
        shm_dir = tmp_path / name
        shm_dir.mkdir()
        store = ObjectStore(str(shm_dir), 1 << 30, str(tmp_path / f"{name}-spill"))
        return ObjectTransfer(store, str(shm_dir), TOKEN, lambda _n: peer[0], name, tls=tls_of_node)

    object_id = "ab" * 14
    content = SECRET * 50_000  # ~2 MB
    peer: list[str] = []
    sender = node("sender", tls, peer)
    with open(shm.object_path(sender.shm_dir, object_id), "wb") as f:
        f.write(content)
    sender.store.add(object_id, len(content))

    async def scenario() -> None:
        server = await sender.serve("127.0.0.1", 0)
        relay = relay_to(server.sockets[0].getsockname()[1])
        peer.append(relay.address)
        try:
            path = await node("receiver", tls, peer).pull(object_id, "sender")
            assert Path(path).read_bytes() == content
            with pytest.raises(ObjectLostError, match="certificate verify failed"):
                await node("stranger", other_tls, peer).pull(object_id, "sender")
        finally:
            server.close()
            await server.wait_closed()
        assert SECRET not in relay.seen
        assert len(relay.seen) > len(content)

    asyncio.run(scenario())


def test_grpc_runs_inside_tls_under_the_fixed_name(tls, other_tls, relay_to) -> None:
    from runtime.grpc_auth import ProofServerInterceptor, add_port, open_channel
    from runtime.protocol import gcs_pb2, gcs_pb2_grpc

    async def scenario() -> None:
        server = grpc.aio.server(interceptors=[ProofServerInterceptor(TOKEN)])

        class AioKv(gcs_pb2_grpc.GcsServicer):
            async def KvGet(self, request, context):
                return gcs_pb2.KvReply(value=SECRET)

        gcs_pb2_grpc.add_GcsServicer_to_server(AioKv(), server)
        port = add_port(server, "127.0.0.1:0", tls)
        await server.start()
        relay = relay_to(port)
        loop = asyncio.get_running_loop()
        try:
            def calls() -> None:
                with open_channel(relay.address, TOKEN, tls=tls) as channel:
                    reply = gcs_pb2_grpc.GcsStub(channel).KvGet(gcs_pb2.KvRequest(key="k"), timeout=10)
                    assert reply.value == SECRET
                with open_channel(relay.address, TOKEN, tls=other_tls) as channel:
                    with pytest.raises(grpc.RpcError) as refused:
                        gcs_pb2_grpc.GcsStub(channel).KvGet(gcs_pb2.KvRequest(key="k"), timeout=5)
                    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

            with futures.ThreadPoolExecutor(1) as pool:
                await loop.run_in_executor(pool, calls)
        finally:
            await server.stop(None)
        assert SECRET not in relay.seen and b"rayctl-auth" not in relay.seen
        assert len(relay.seen) > len(SECRET)

    asyncio.run(scenario())


def test_a_cluster_started_with_tls_runs_tasks_across_nodes_over_it(tmp_path: Path) -> None:
    """The head, a second node, drivers and workers all speak TLS: an object made on one node
    is read on the other (data plane), tasks run (direct transport), the GCS answers (gRPC);
    a client holding the token but not the TLS material gets nowhere."""
    import numpy as np

    import runtime as rt
    from runtime.auth import read_credentials
    from runtime.cluster_utils import Cluster

    cluster = Cluster({"num_cpus": 1, "tls": True, "resources": {"head": 1}})
    try:
        assert read_credentials(cluster.head.token_file).tls is not None
        cluster.add_node(num_cpus=1, resources={"other": 1})
        cluster.connect()

        @rt.remote(resources={"other": 1})
        def make() -> np.ndarray:
            return np.full(4 * 1024 * 1024, 7, dtype=np.uint8)

        @rt.remote(resources={"head": 1})
        def total(array: np.ndarray) -> int:
            return int(array.sum())

        assert rt.get(total.remote(make.remote()), timeout=60) == 7 * 4 * 1024 * 1024
        assert len([n for n in rt.nodes() if n["Alive"]]) == 2
        rt.shutdown()
        with pytest.raises(ConnectionError, match="runs TLS and this process has only its token"):
            rt.init(address=cluster.address, _token=cluster.token, _temp_dir=cluster.temp_dir)
    finally:
        cluster.shutdown()

"""TLS on every channel (issue 13): a cluster CA and a node certificate under a fixed name; the
direct transport, the object data plane and gRPC each run inside TLS when given the cluster's
material. A recording relay between the two ends shows what crosses the network."""

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
from runtime.tls import CA_FILE, CERT_FILE, KEY_FILE, TLS_NAME, ClusterTls, create_cluster_tls

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


@pytest.fixture
def tls(tmp_path: Path) -> ClusterTls:
    return create_cluster_tls(str(tmp_path / "tls"))


@pytest.fixture
def other_tls(tmp_path: Path) -> ClusterTls:
    return create_cluster_tls(str(tmp_path / "other-tls"))


def test_the_cluster_material_is_private_and_names_the_cluster_not_an_address(
    tls: ClusterTls,
) -> None:
    from cryptography import x509

    names = sorted(os.listdir(tls.directory))
    assert names == sorted([CA_FILE, CERT_FILE, KEY_FILE]), "the CA key must not be kept"
    for name in names:
        assert stat.S_IMODE(os.stat(os.path.join(tls.directory, name)).st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(tls.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [TLS_NAME]


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

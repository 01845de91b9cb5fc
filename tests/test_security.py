"""The cluster token guards every gRPC method and every node-local connection; versions must match."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import threading

import grpc
import psutil
import pytest

from runtime.protocol import gcs_pb2, gcs_pb2_grpc, raylet_pb2


def _services():

    return [(gcs_pb2, "Gcs"), (raylet_pb2, "Raylet")]


def _all_methods():
    from google.protobuf import message_factory

    for module, service in _services():
        desc = module.DESCRIPTOR.services_by_name[service]
        for method in desc.methods:
            request_cls = message_factory.GetMessageClass(method.input_type)
            yield service, method.name, request_cls


def _addresses(rt):
    node = rt.nodes()[0]
    from runtime.api import _core

    return {
        "Gcs": _core().gcs_address,
        "Raylet": f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}",
    }


def _bad_auth(token: str) -> list:
    from runtime.auth import Channel, Role, new_nonce, proof

    def signed(secret: str, millis: int) -> tuple:
        def make(method: str) -> tuple:
            nonce = new_nonce()
            mac = proof(secret, Role.CLIENT, Channel.GRPC, nonce, str(millis), method)
            return (("rayctl-auth", f"{nonce}.{millis}.{mac}"),)
        return make

    import time

    now = int(time.time() * 1000)
    return [
        lambda _m: None,  # nothing
        lambda _m: (("rayctl-token", token),),  # the token itself, the old way
        signed("wrong", now),  # a proof made with another token
        lambda _m: (("rayctl-auth", "garbage"),),
    ]


def test_every_grpc_method_refuses_calls_without_a_proof(cluster) -> None:
    from runtime.api import _core

    addresses = _addresses(cluster)
    methods = list(_all_methods())
    assert len(methods) >= 15
    for make_metadata in _bad_auth(_core().token):
        for service, name, request_cls in methods:
            with grpc.insecure_channel(addresses[service]) as channel:
                call = channel.unary_unary(
                    f"/rayctl.{service}/{name}",
                    request_serializer=request_cls.SerializeToString,
                    response_deserializer=lambda b: b,
                )
                with pytest.raises(grpc.RpcError) as info:
                    call(request_cls(), metadata=make_metadata(f"/rayctl.{service}/{name}"),
                         timeout=5)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, (
                    f"{service}.{name} was not refused"
                )


def test_a_grpc_call_overheard_cannot_be_replayed_and_a_skewed_clock_is_named(cluster) -> None:
    import time

    from runtime.api import _core
    from runtime.auth import Channel, Role, new_nonce, proof
    from runtime.grpc_auth import open_channel

    gcs, token = _core().gcs_address, _core().token
    method = "/rayctl.Gcs/GetNodes"
    millis = str(int(time.time() * 1000))
    nonce = new_nonce()
    header = (("rayctl-auth", f"{nonce}.{millis}.{proof(token, Role.CLIENT, Channel.GRPC, nonce, millis, method)}"),)
    with grpc.insecure_channel(gcs) as channel:
        call = channel.unary_unary(method, request_serializer=gcs_pb2.Empty.SerializeToString,
                                   response_deserializer=gcs_pb2.GetNodesReply.FromString)
        reply, answered = call.with_call(gcs_pb2.Empty(), metadata=header, timeout=5)
        assert reply.nodes
        assert any(k == "rayctl-proof" for k, _v in answered.trailing_metadata())
        with pytest.raises(grpc.RpcError) as replayed:
            call(gcs_pb2.Empty(), metadata=header, timeout=5)
    assert replayed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "replayed" in replayed.value.details()
    with open_channel(gcs, token, clock=lambda: time.time() + 120) as late:
        with pytest.raises(grpc.RpcError) as skewed:
            gcs_pb2_grpc.GcsStub(late).GetNodes(gcs_pb2.Empty(), timeout=5)
    assert skewed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "clock is +120 s off" in skewed.value.details()
    assert "NTP" in skewed.value.details()


class _ImpostorGcs(gcs_pb2_grpc.GcsServicer):
    """A GCS without the cluster token: it answers GetNodes with a node of its choosing."""

    def __init__(self) -> None:
        self.metadata: list = []

    def GetNodes(self, request, context):
        self.metadata.append(tuple(context.invocation_metadata()))
        from runtime.protocol import common_pb2

        return gcs_pb2.GetNodesReply(nodes=[common_pb2.NodeInfo(node_id="evil")])


def test_a_grpc_client_takes_no_reply_from_a_server_without_the_token() -> None:
    import asyncio
    from concurrent import futures

    from runtime.grpc_auth import open_aio_channel, open_channel

    token = "e" * 64
    impostor = _ImpostorGcs()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    gcs_pb2_grpc.add_GcsServicer_to_server(impostor, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    address = f"127.0.0.1:{port}"
    try:
        with open_channel(address, token) as channel:
            stub = gcs_pb2_grpc.GcsStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetNodes(gcs_pb2.Empty(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "did not prove" in refused.value.details()
            future = stub.GetNodes.future(gcs_pb2.Empty(), timeout=5)
            assert isinstance(future.exception(), grpc.RpcError)
            with pytest.raises(grpc.RpcError):
                future.result()

        async def aio() -> None:
            async with open_aio_channel(address, token) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await gcs_pb2_grpc.GcsStub(channel).GetNodes(gcs_pb2.Empty(), timeout=5)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

        asyncio.run(aio())
    finally:
        server.stop(None)
    assert len(impostor.metadata) == 3
    assert not any(token in value for md in impostor.metadata for _k, value in md)


def _frame(sock: socket.socket, message: dict) -> None:
    payload = json.dumps(message).encode()
    sock.sendall(struct.pack("!I", len(payload)) + payload)


def _read_frame(sock: socket.socket) -> dict:
    size = struct.unpack("!I", _recv_exact(sock, 4))[0]
    return json.loads(_recv_exact(sock, size))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def _raw_exchange(address: str, payload: bytes) -> dict:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(struct.pack("!I", len(payload)) + payload)
        return _read_frame(sock)


def _local_ports(rt):
    from runtime.api import _core

    cw = _core()
    node = cw.nodes()[0]
    return [f"{node.address}:{node.local_port}", cw.address]


def _versions() -> dict:
    from runtime.constants import PROTOCOL_VERSION, PYTHON_VERSION, RAYCTL_VERSION

    return {"python": PYTHON_VERSION, "rayctl": RAYCTL_VERSION, "protocol": PROTOCOL_VERSION}


def test_node_local_transport_refuses_a_wrong_proof_an_old_hello_and_garbage(cluster) -> None:
    from runtime.api import _core
    from runtime.auth import Channel, Role, new_nonce, proof, proof_ok

    token = _core().token
    for address in _local_ports(cluster):
        host, _, port = address.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            ours = new_nonce()
            _frame(sock, {"magic": "RAYCTL/1", "versions": _versions(), "nonce": ours})
            challenge = _read_frame(sock)
            # the server proves itself first, without giving the token away
            assert token not in json.dumps(challenge)
            assert proof_ok(token, challenge["proof"], Role.SERVER, Channel.DIRECT, ours,
                            challenge["challenge"])
            wrong = proof("wrong", Role.CLIENT, Channel.DIRECT, ours, challenge["challenge"])
            _frame(sock, {"proof": wrong})
            assert _read_frame(sock) == {"ok": False, "error": "missing or wrong cluster token"}
        # a hello that carries the token itself (the old way) gets no further
        reply = _raw_exchange(address, json.dumps(
            {"magic": "RAYCTL/1", "token": token, "versions": _versions()}).encode())
        assert reply["ok"] is False and "nonce" in reply["error"]
        reply = _raw_exchange(address, b"\x80\x05garbage pickle")
        assert reply["ok"] is False and "garbage" in reply["error"]


def test_version_mismatch_is_refused_naming_both_versions(cluster) -> None:
    from runtime.auth import new_nonce
    from runtime.constants import RAYCTL_VERSION

    old = dict(_versions(), rayctl="0.0.1-old")
    for address in _local_ports(cluster):
        reply = _raw_exchange(address, json.dumps(
            {"magic": "RAYCTL/1", "versions": old, "nonce": new_nonce()}).encode())
        assert reply["ok"] is False
        assert "version mismatch" in reply["error"]
        assert "0.0.1-old" in reply["error"] and RAYCTL_VERSION in reply["error"]


class _Impostor:
    """A listener where a client dials that does not hold the cluster token: it records what it
    is sent and answers every hello with a made-up proof, then a pickle that leaves a mark if
    anyone unpickles it."""

    def __init__(self, mark: str) -> None:
        self.received = bytearray()
        self.mark = mark
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import pickle

        self.sock.settimeout(10)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(3)
            trap = pickle.dumps(("rep", 1, True, _Mark(self.mark)))
            try:
                self.received += conn.recv(65536)
                _frame(conn, {"ok": True, "challenge": "0" * 32, "proof": "0" * 64,
                              "versions": _versions()})
                conn.sendall(struct.pack("!I", len(trap)) + trap)
                while chunk := conn.recv(65536):
                    self.received += chunk
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        self._thread.join(10)


class _Mark:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_client_sends_nothing_to_and_unpickles_nothing_from_a_listener_without_the_token(
    tmp_path,
) -> None:
    import asyncio

    from runtime import transport
    from runtime.exceptions import AuthenticationError

    token = "a" * 64
    mark = str(tmp_path / "unpickled")
    impostor = _Impostor(mark)
    try:
        with pytest.raises(AuthenticationError) as info:
            asyncio.run(transport.connect(impostor.address, token, timeout_s=5))
    finally:
        impostor.close()
    assert impostor.address in str(info.value) and "prove" in str(info.value)
    assert token.encode() not in impostor.received
    assert b"proof" not in impostor.received  # nothing it could replay either
    assert not os.path.exists(mark)


def test_a_transport_with_another_token_is_refused_both_ways() -> None:
    import asyncio

    from runtime import transport
    from runtime.exceptions import AuthenticationError

    async def scenario() -> None:
        server = await transport.serve("127.0.0.1", 0, "b" * 64, lambda c, m, p: p)
        address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            with pytest.raises(AuthenticationError):
                await transport.connect(address, "c" * 64, timeout_s=5)
            conn = await transport.connect(address, "b" * 64, timeout_s=5)
            assert await conn.request("echo", {"x": 1}) == {"x": 1}
            conn.close()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_token_file_is_private_and_services_bind_to_the_node_address(cluster, temp_dir) -> None:
    from runtime.session import all_sessions, session_processes

    (session,) = all_sessions(temp_dir)
    mode = stat.S_IMODE(os.stat(os.path.join(session, "token")).st_mode)
    assert mode == 0o600
    for proc in session_processes(session):
        for conn in proc.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                assert conn.laddr.ip in ("127.0.0.1", "::ffff:127.0.0.1"), (
                    f"{proc.name()} listens on {conn.laddr}"
                )
        assert not any(
            len(a) == 64 and all(c in "0123456789abcdef" for c in a) for a in proc.cmdline()
        ), "the token must never appear on a command line"


def test_object_data_plane_refuses_without_a_proof_and_proves_itself(cluster) -> None:
    from runtime.api import _core
    from runtime.auth import Channel, Role, new_nonce, proof, proof_ok

    node = _core().nodes()[0]
    token = _core().token
    assert node.data_port

    def ask(secret: str) -> socket.socket:
        sock = socket.create_connection((node.address, node.data_port), timeout=5)
        ours = new_nonce()
        _frame(sock, {"object_id": "not-an-object", "nonce": ours})
        challenge = _read_frame(sock)
        assert proof_ok(token, challenge["proof"], Role.SERVER, Channel.DATA, ours,
                        challenge["challenge"], "not-an-object")
        _frame(sock, {"proof": proof(secret, Role.CLIENT, Channel.DATA, ours,
                                     challenge["challenge"], "not-an-object")})
        return sock

    for secret in ("wrong", ""):
        with ask(secret) as sock:
            assert sock.recv(16) == b"", "the data plane answered a peer without the token"
    with socket.create_connection((node.address, node.data_port), timeout=5) as sock:
        _frame(sock, {"token": token, "object_id": "00"})  # the old way: no nonce, no answer
        assert sock.recv(16) == b""
    with ask(token) as sock:
        assert struct.unpack("!q", _recv_exact(sock, 8))[0] == -1  # authenticated: "not here"


def test_object_pull_from_a_listener_without_the_token_takes_nothing(tmp_path) -> None:
    import asyncio

    from runtime.exceptions import ObjectLostError
    from runtime.object_store import ObjectStore
    from runtime.raylet.transfer import ObjectTransfer

    impostor = _Impostor(str(tmp_path / "unused"))
    token = "d" * 64
    shm_dir = tmp_path / "shm"
    shm_dir.mkdir()
    transfer = ObjectTransfer(ObjectStore(str(shm_dir), 1 << 30, str(tmp_path / "spill")), str(shm_dir), token,
                              lambda _node: impostor.address)
    try:
        with pytest.raises(ObjectLostError) as info:
            asyncio.run(transfer.pull("ab" * 14, "n1"))
    finally:
        impostor.close()
    assert "prove" in str(info.value)
    assert token.encode() not in impostor.received
    assert not [p for p in os.listdir(shm_dir)], "bytes from the impostor were kept"

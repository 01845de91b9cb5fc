"""The cluster token guards every gRPC method and every node-local connection; versions must match."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct

import grpc
import psutil
import pytest

from runtime.protocol import gcs_pb2, raylet_pb2


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


@pytest.mark.parametrize(
    "metadata", [None, (("rayctl-token", "wrong"),)], ids=["no-token", "wrong-token"]
)
def test_every_grpc_method_refuses_calls_without_the_token(cluster, metadata) -> None:
    addresses = _addresses(cluster)
    methods = list(_all_methods())
    assert len(methods) >= 15
    for service, name, request_cls in methods:
        with grpc.insecure_channel(addresses[service]) as channel:
            call = channel.unary_unary(
                f"/rayctl.{service}/{name}",
                request_serializer=request_cls.SerializeToString,
                response_deserializer=lambda b: b,
            )
            with pytest.raises(grpc.RpcError) as info:
                call(request_cls(), metadata=metadata, timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, (
                f"{service}.{name} was not refused"
            )


def _raw_exchange(address: str, payload: bytes) -> dict:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(struct.pack("!I", len(payload)) + payload)
        size = struct.unpack("!I", sock.recv(4))[0]
        data = b""
        while len(data) < size:
            data += sock.recv(size - len(data))
        return json.loads(data)


def _local_ports(rt):
    from runtime.api import _core

    cw = _core()
    node = cw.nodes()[0]
    return [f"{node.address}:{node.local_port}", cw.address]


def test_node_local_transport_refuses_wrong_token_and_garbage(cluster) -> None:
    from runtime.constants import PROTOCOL_VERSION, PYTHON_VERSION, RAYCTL_VERSION

    versions = {"python": PYTHON_VERSION, "rayctl": RAYCTL_VERSION, "protocol": PROTOCOL_VERSION}
    for address in _local_ports(cluster):
        reply = _raw_exchange(
            address,
            json.dumps({"magic": "RAYCTL/1", "token": "wrong", "versions": versions}).encode(),
        )
        assert reply == {"ok": False, "error": "missing or wrong cluster token"}
        reply = _raw_exchange(address, b"\x80\x05garbage pickle")
        assert reply["ok"] is False and "garbage" in reply["error"]


def test_version_mismatch_is_refused_naming_both_versions(cluster) -> None:
    from runtime.api import _core
    from runtime.constants import PROTOCOL_VERSION, PYTHON_VERSION, RAYCTL_VERSION

    cw = _core()
    old = {"python": PYTHON_VERSION, "rayctl": "0.0.1-old", "protocol": PROTOCOL_VERSION}
    for address in _local_ports(cluster):
        reply = _raw_exchange(
            address, json.dumps({"magic": "RAYCTL/1", "token": cw.token, "versions": old}).encode()
        )
        assert reply["ok"] is False
        assert "version mismatch" in reply["error"]
        assert "0.0.1-old" in reply["error"] and RAYCTL_VERSION in reply["error"]


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


def test_object_data_plane_refuses_without_the_token(cluster) -> None:
    from runtime.api import _core

    node = _core().nodes()[0]
    assert node.data_port
    for token in ("wrong", ""):
        request = json.dumps({"token": token, "object_id": "00"}).encode()
        with socket.create_connection((node.address, node.data_port), timeout=5) as sock:
            sock.sendall(struct.pack("!I", len(request)) + request)
            assert sock.recv(16) == b"", "the data plane answered a peer without the token"
    request = json.dumps({"token": _core().token, "object_id": "not-an-object"}).encode()
    with socket.create_connection((node.address, node.data_port), timeout=5) as sock:
        sock.sendall(struct.pack("!I", len(request)) + request)
        assert struct.unpack("!q", sock.recv(8))[0] == -1  # authenticated: "not here"

"""Fuzzing (issue 13): random frames on a real raylet's ports and a driver's own listener, and
random cluster configs. A frame gets a clean close, never a crash or memory growth; a config gets
a ClusterConfigError with one line per problem, never another exception.

The default run is short and repeatable (a fixed seed, ~5 s); `scripts/fuzz.sh` sets
RAYCTL_FUZZ=long for thousands of random examples."""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.config import ClusterConfigError, validate_config
from runtime.cluster_utils import Cluster
from tests.polling import wait_for

MIB = 1024**2
LONG = os.environ.get("RAYCTL_FUZZ") == "long"
FUZZ = settings(
    max_examples=5000 if LONG else 150, deadline=None, derandomize=not LONG, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FUZZ_CONFIGS = settings(
    max_examples=20000 if LONG else 300, deadline=None, derandomize=not LONG, database=None
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster({"num_cpus": 1})
    try:
        c.connect()
        yield c
    finally:
        c.shutdown()


def _listeners(cluster: Cluster) -> dict[str, tuple[str, int]]:
    from runtime.api import _core
    from runtime.protocol import gcs_pb2

    cw = _core()
    [node] = cw.gcs_call("GetNodes", gcs_pb2.Empty()).nodes
    host, _, port = cw.address.rpartition(":")
    return {
        "node-local": ("127.0.0.1", cluster.head.raylet_local_port),
        "data plane": ("127.0.0.1", node.data_port),
        "driver": (host, int(port)),
    }


def _handshake_like() -> st.SearchStrategy[bytes]:
    """JSON that looks like a handshake, with wrong or odd fields."""
    value = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40),
                      st.lists(st.integers(), max_size=3),
                      st.text("0123456789abcdef", min_size=32, max_size=64))  # nonce, proof
    body = st.dictionaries(
        st.sampled_from(["magic", "token", "versions", "info", "object_id", "nonce", "proof",
                         "x"]), value,
        max_size=5,
    ).map(lambda d: json.dumps(d).encode())
    return body.map(lambda b: struct.pack("!I", len(b)) + b)


FRAMES = st.one_of(
    st.binary(max_size=2048),  # garbage
    _handshake_like(),
    st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=256)).map(
        lambda t: struct.pack("!I", t[0]) + t[1]  # any length prefix, a short body
    ),
)


def _send(address: tuple[str, int], data: bytes) -> None:
    with socket.create_connection(address, timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.settimeout(0.05)
            sock.recv(65536)  # a refusal, a close, or nothing yet
        except OSError:
            pass


def test_random_frames_on_every_port_leave_the_node_working(cluster: Cluster) -> None:
    raylet = psutil.Process(cluster.head.procs[-1].pid)
    listeners = _listeners(cluster)
    rss_before, fds_before = raylet.memory_info().rss, raylet.num_fds()

    @FUZZ
    @given(port=st.sampled_from(sorted(listeners)), frame=FRAMES)
    def fuzz(port: str, frame: bytes) -> None:
        _send(listeners[port], frame)

    fuzz()
    assert raylet.is_running()
    grown = (raylet.memory_info().rss - rss_before) / MIB
    assert grown < 16, f"the raylet grew {grown:.1f} MiB"
    wait_for(lambda: raylet.num_fds() - fds_before <= 8, 10, "the fuzzed connections to close")

    import runtime as rt

    @rt.remote
    def still() -> str:
        return "working"

    assert rt.get(still.remote(), timeout=30) == "working"


# --- configs ------------------------------------------------------------------------------------

_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)
_KEYS = ["cluster_name", "max_workers", "upscaling_speed", "idle_timeout_minutes", "provider",
         "head_node_type", "available_node_types", "resources", "min_workers", "node_config",
         "CPU", "GPU", "type", "setup_commands", "file_mounts", "auth", "docker", "x"]
_NESTED = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(_KEYS), st.text(max_size=8)), inner,
                        max_size=4),
    ),
    max_leaves=12,
)


def _config() -> st.SearchStrategy[Any]:
    node_type = st.fixed_dictionaries(
        {}, optional={"resources": _NESTED, "min_workers": _SCALAR, "max_workers": _SCALAR,
                      "node_config": _NESTED},
    )
    return st.one_of(
        _NESTED,
        st.fixed_dictionaries(
            {"cluster_name": st.one_of(st.just("t"), _SCALAR),
             "provider": st.one_of(st.just({"type": "local"}), _NESTED),
             "available_node_types": st.one_of(
                 st.dictionaries(st.one_of(st.just("head"), st.text(max_size=10)), node_type,
                                 max_size=3), _NESTED)},
            optional={"head_node_type": st.one_of(st.just("head"), _SCALAR),
                      "max_workers": _SCALAR, "upscaling_speed": _SCALAR,
                      "idle_timeout_minutes": _SCALAR},
        ),
    )


@FUZZ_CONFIGS
@given(raw=_config())
def test_random_configs_are_accepted_or_refused_line_by_line(raw: Any) -> None:
    try:
        validate_config(raw)
    except ClusterConfigError as exc:
        for line in exc.errors:
            assert "\n" not in line and "Traceback" not in line

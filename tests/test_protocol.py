"""The committed gRPC stubs are what scripts/gen_protos.sh makes from the .proto files."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_generated_stubs_are_current(tmp_path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            *[
                f"runtime/protocol/{f}"
                for f in sorted(os.listdir(os.path.join(ROOT, "runtime/protocol")))
                if f.endswith(".proto")
            ],
        ],
        cwd=ROOT,
        check=True,
    )
    generated = os.path.join(tmp_path, "runtime", "protocol")
    for name in sorted(os.listdir(generated)):
        committed = os.path.join(ROOT, "runtime", "protocol", name)
        assert os.path.exists(committed), f"{name} is not committed: run scripts/gen_protos.sh"
        assert filecmp.cmp(committed, os.path.join(generated, name), shallow=False), (
            f"runtime/protocol/{name} is stale: run scripts/gen_protos.sh"
        )


def test_a_node_or_driver_of_an_older_protocol_is_refused_naming_both_versions(cluster) -> None:
    """Protocol 2 made states proto enums, protocol 3 replaced the heartbeat with the node sync
    stream: an older raylet or driver would misread states or never report, so the GCS refuses
    it at its first call."""
    import grpc
    import pytest

    from runtime.api import _core
    from runtime.constants import PROTOCOL_VERSION, PYTHON_VERSION, RAYCTL_VERSION
    from runtime.protocol import common_pb2, gcs_pb2, gcs_pb2_grpc

    assert PROTOCOL_VERSION == 3
    cw = _core()
    old = common_pb2.Versions(python=PYTHON_VERSION, rayctl=RAYCTL_VERSION, protocol=2)
    node = common_pb2.NodeInfo(node_id="old-node", address="127.0.0.1", versions=old)
    from runtime.grpc_auth import open_channel

    with open_channel(cw.gcs_address, cw.token) as channel:
        gcs = gcs_pb2_grpc.GcsStub(channel)
        for method, request in [
            ("RegisterNode", gcs_pb2.RegisterNodeRequest(node=node)),
            ("RegisterJob", gcs_pb2.RegisterJobRequest(versions=old, driver_pid=1)),
        ]:
            with pytest.raises(grpc.RpcError) as refused:
                getattr(gcs, method)(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, method
            assert "it runs protocol 2, this process runs protocol 3" in refused.value.details()
    assert "old-node" not in {n["NodeID"] for n in cluster.nodes()}

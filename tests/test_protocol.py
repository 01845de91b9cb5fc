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

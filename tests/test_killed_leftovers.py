"""What killed processes leave is reclaimed: a raylet killed with SIGKILL loses its shm and spill
directories when the next raylet of the session starts; a writer killed mid-put loses its .tmp."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import psutil
import pytest

from runtime.cluster_utils import Cluster
from tests.polling import wait_for

# A driver that starts writing an object into its node's store and is killed before sealing it.
PARTIAL_WRITER = textwrap.dedent("""
    import os, sys, time
    import runtime as rt
    from runtime import shm
    from runtime.api import _core
    rt.init(address=sys.argv[1], _token=sys.argv[2], _temp_dir=sys.argv[3])
    path = shm.tmp_path(_core().shm_dir, "partial-object")
    with open(path, "wb") as f:
        f.write(b"half an object")
    print(path, flush=True)
    time.sleep(600)
""")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster({"num_cpus": 1})
    try:
        yield c
    finally:
        c.shutdown()


def test_next_raylet_removes_a_killed_raylets_directories(cluster: Cluster) -> None:
    node = cluster.add_node(num_cpus=0)
    spill_dir = os.path.join(
        cluster.head.session_dir, "spill", os.path.basename(node.shm_dir)[len("rayctl-") :]
    )
    assert os.path.isdir(node.shm_dir) and os.path.isdir(spill_dir)
    cluster.remove_node(node, allow_graceful=False)
    assert os.path.isdir(node.shm_dir), "a killed raylet cannot clean up after itself"
    cluster.add_node(num_cpus=0)
    assert not os.path.exists(node.shm_dir)
    assert not os.path.exists(spill_dir)
    assert os.path.isdir(cluster.head.shm_dir), "a live raylet's store is left alone"


def test_partial_write_of_a_killed_writer_is_removed(cluster: Cluster) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", PARTIAL_WRITER, cluster.address, cluster.token, cluster.temp_dir],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        tmp = writer.stdout.readline().strip()
        assert tmp.endswith(".tmp") and os.path.exists(tmp)
        writer.kill()
        writer.wait(10)
        wait_for(
            lambda: not os.path.exists(tmp), timeout_s=5, what="the killed writer's .tmp to go"
        )
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(10)


def test_a_new_cluster_removes_what_a_killed_cluster_left_in_the_same_temp_dir(
    tmp_path: Path,
) -> None:
    """A whole cluster killed with SIGKILL (no `rayctl stop`, as after a crash): the first raylet
    of the next session in that temp dir removes the dead raylets' shm and spill directories."""
    temp_dir = str(tmp_path / "rayctl-tmp")
    old = Cluster({"num_cpus": 0}, temp_dir=temp_dir)
    old_node = old.add_node(num_cpus=0)
    old_dirs = [old.head.shm_dir, old_node.shm_dir]
    old_spill = os.path.join(old.head.session_dir, "spill")
    try:
        assert all(os.path.isdir(d) for d in old_dirs)
        for proc in [*old.head.procs, *old_node.procs]:  # every process, at once
            with suppress(psutil.Error):
                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.kill()
            proc.kill()
            proc.wait(10)
        assert all(os.path.isdir(d) for d in old_dirs), "killed raylets cannot clean up"
        new = Cluster({"num_cpus": 0}, temp_dir=temp_dir)
        try:
            assert new.head.session_dir != old.head.session_dir
            assert not any(os.path.exists(d) for d in old_dirs)
            assert not os.listdir(old_spill)
            assert os.path.isdir(new.head.shm_dir)
        finally:
            new.shutdown()
    finally:
        for d in old_dirs:
            shutil.rmtree(d, ignore_errors=True)

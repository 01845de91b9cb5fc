"""A worker node whose head is gone for good stops its processes and ends its machine (the
end-machine command, here one that writes a file); a GCS back within the timeout changes nothing."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from runtime.cluster_utils import Cluster
from tests.polling import wait_for


@pytest.fixture
def supervised_cluster() -> Iterator[Cluster]:
    """A head whose GCS runs under the supervisor (restarted when killed), as `rayctl up` makes."""
    cluster = Cluster({"supervised_services": []})
    try:
        yield cluster
    finally:
        cluster.shutdown()


def _gcs(cluster: Cluster) -> psutil.Process | None:
    """The head's GCS process now (a restarted one is a child of the supervisor)."""
    for proc in psutil.process_iter():
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:  # exited, or a zombie not yet reaped
            continue
        if "runtime.gcs.server" in cmd and cluster.head.session_dir in cmd:
            return proc
    return None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_a_worker_without_its_head_stops_then_ends_its_machine(tmp_path: Path) -> None:
    marker = tmp_path / "ended"
    cluster = Cluster()
    try:
        node = cluster.add_node(
            num_cpus=1, gcs_lost_timeout_s=2, end_machine_command=f"echo ended > {marker}"
        )
        raylet = psutil.Process(node.procs[-1].pid)
        node_procs = [raylet, *raylet.children(recursive=True)]
        assert len(node_procs) > 1  # the raylet and its prestarted worker
        gcs = _gcs(cluster)
        assert gcs is not None
        gcs.send_signal(signal.SIGKILL)
        start = time.monotonic()
        wait_for(marker.exists, 15, "the end-machine command to run")
        assert 1.5 < time.monotonic() - start < 12
        assert node.procs[-1].wait(5) == 0
        left = [p for p in node_procs if _alive(p)]
        assert left == [], f"processes left after the head was lost: {left}"
    finally:
        cluster.shutdown()


def test_a_gcs_back_within_the_timeout_ends_nothing(
    supervised_cluster: Cluster, tmp_path: Path
) -> None:
    marker = tmp_path / "ended"
    node = supervised_cluster.add_node(
        num_cpus=1, gcs_lost_timeout_s=2, end_machine_command=f"echo ended > {marker}"
    )
    old = _gcs(supervised_cluster)
    assert old is not None
    old.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: (_gcs(supervised_cluster) or old).pid != old.pid, 10, "a new GCS")
    # Nothing to wait on for "nothing happened": let the 2 s timeout pass, with a margin.
    time.sleep(max(0.0, killed_at + 3.0 - time.monotonic()))
    assert node.procs[-1].poll() is None
    assert not marker.exists()

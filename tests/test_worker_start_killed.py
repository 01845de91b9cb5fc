"""A worker killed while it starts (before it registers with its raylet) is replaced for the
lease that waits on it: the task still runs. It used to hang forever (the chaos suite's worker
scenario, under load, stopped with ~280 tasks pending)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil

from runtime.cluster_utils import Cluster


def _workers(raylet: psutil.Process) -> set[int]:
    found = set()
    for child in raylet.children():
        try:
            if "runtime.worker" in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            pass
    return found


def test_a_worker_killed_before_it_registers_is_replaced_and_the_task_runs() -> None:
    import runtime as rt

    cluster = Cluster({"num_cpus": 1})
    try:
        cluster.connect()
        raylet = psutil.Process(cluster.head.procs[-1].pid)
        for pid in _workers(raylet):  # no idle worker: the task needs a new one
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _workers(raylet) and time.monotonic() < deadline:
            time.sleep(0.01)
        known = _workers(raylet)

        @rt.remote(max_retries=0)
        def answer() -> int:
            return 42

        ref = answer.remote()
        killed = 0
        deadline = time.monotonic() + 10
        while killed < 2 and time.monotonic() < deadline:  # kill the first two as they start
            for pid in _workers(raylet) - known:
                known.add(pid)
                os.kill(pid, signal.SIGKILL)
                killed += 1
            time.sleep(0.002)
        assert killed == 2
        assert rt.get(ref, timeout=30) == 42
        log = Path(cluster.head.session_dir, "logs", f"raylet-{cluster.head.node_id}.log")
        assert "died before registering; starting another" in log.read_text()
    finally:
        cluster.shutdown()

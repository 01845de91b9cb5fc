"""`rayctl start --head`, a second process joining with address="auto", `rayctl stop`: nothing of
ours is left, an unrelated process is left alone."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap

import psutil


def _rayctl(temp_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RAYCTL_TEMP_DIR=temp_dir)
    return subprocess.run(
        [sys.executable, "-m", "autoscaler.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_start_join_stop(tmp_path) -> None:
    temp_dir = str(tmp_path / "rayctl")
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    shm_before = set(glob.glob("/dev/shm/rayctl-*"))
    try:
        started = _rayctl(temp_dir, "start", "--head", "--num-cpus", "2")
        assert started.returncode == 0, started.stderr
        assert "Cluster address: 127.0.0.1:" in started.stdout and "logs:" in started.stdout
        joined = _rayctl(
            temp_dir,
            "start",
            "--address",
            started.stdout.split("Cluster address: ")[1].split()[0],
            "--num-cpus",
            "1",
        )
        assert joined.returncode == 0, joined.stderr
        driver = textwrap.dedent("""
            import runtime as rt
            rt.init(address="auto")
            @rt.remote
            def where():
                return rt.get_runtime_context().get_node_id()
            print(len(rt.nodes()), rt.cluster_resources()["CPU"], rt.get(where.remote()) != "")
            rt.shutdown()
        """)
        out = subprocess.run(
            [sys.executable, "-c", driver],
            env=dict(os.environ, RAYCTL_TEMP_DIR=temp_dir),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split()[-3:] == ["2", "3.0", "True"]
        from runtime.session import all_sessions, session_processes

        ours = [p for s in all_sessions(temp_dir) for p in session_processes(s)]
        assert len(ours) >= 5
    finally:
        stopped = _rayctl(temp_dir, "stop")
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    gone, alive = psutil.wait_procs(ours, timeout=10)
    assert not alive
    assert unrelated.poll() is None, "rayctl stop must leave unrelated processes alone"
    unrelated.kill()
    unrelated.wait()
    assert set(glob.glob("/dev/shm/rayctl-*")) <= shm_before, "shm dirs left behind"
    again = _rayctl(temp_dir, "stop")
    assert "No rayctl processes" in again.stdout

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
    try:
        started = _rayctl(temp_dir, "start", "--head", "--num-cpus", "2")
        assert started.returncode == 0, started.stderr
        assert "Cluster address: 127.0.0.1:" in started.stdout and "logs:" in started.stdout
        address = started.stdout.split("Cluster address: ")[1].split()[0]
        for _ in range(2):  # two more nodes join the head on this machine
            joined = _rayctl(temp_dir, "start", "--address", address, "--num-cpus", "1")
            assert joined.returncode == 0, joined.stderr
        driver = textwrap.dedent("""
            import runtime as rt
            rt.init(address="auto")
            import time
            @rt.remote(num_cpus=1)
            def where():
                time.sleep(0.5)
                return rt.get_runtime_context().get_node_id()
            used = set(rt.get([where.remote() for _ in range(8)]))
            print(len(rt.nodes()), rt.cluster_resources()["CPU"], len(used))
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
        assert out.stdout.split()[-3:] == ["3", "4.0", "3"], "three nodes seen, work on all three"
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
    ours = [line.strip() for f in glob.glob(os.path.join(temp_dir, "session_*", "shm_dirs"))
            for line in open(f) if line.strip()]
    assert len(ours) == 3, ours  # one object store per node
    assert not [d for d in ours if os.path.exists(d)], "shm dirs left behind"
    again = _rayctl(temp_dir, "stop")
    assert "No rayctl processes" in again.stdout


def test_stop_does_not_wait_on_a_process_nobody_reaps(tmp_path) -> None:
    """A session process that exits but stays a zombie (its parent never reaps it, as with an
    orphan in a container without an init) counts as stopped: no waiting out the grace period."""
    import time

    from runtime.session import record_pid, session_dir_for, stop_session

    session = session_dir_for(str(tmp_path), "zombie")
    parent = subprocess.Popen(  # starts a child, then never waits for it
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "child = subprocess.Popen(['sleep', '60'])\nprint(child.pid, flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        record_pid(session, "child", child)
        start = time.monotonic()
        assert stop_session(session, grace_s=30) == [child]
        assert time.monotonic() - start < 10, "stop waited for a zombie to be reaped"
        assert psutil.Process(child).status() == psutil.STATUS_ZOMBIE  # stopped, not yet reaped
    finally:
        parent.kill()
        parent.wait()

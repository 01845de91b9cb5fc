"""Redis killed with SIGKILL under a `rayctl start --head` cluster: the head's supervisor starts
it again from its append-only file, the GCS and the raylet ride through the gap, and nothing is
lost: a detached actor made before the kill still answers with its state, a new driver starts,
a new actor and a task run, the head stays alive, and `rayctl stop` leaves nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
from polling import wait_for


def _rayctl(temp_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoscaler.cli", *args],
                          env=dict(os.environ, RAYCTL_TEMP_DIR=temp_dir),
                          capture_output=True, text=True, timeout=60)


def _driver(temp_dir: str, body: str) -> subprocess.CompletedProcess[str]:
    script = "import runtime as rt, time\nrt.init(address='auto', namespace='keep')\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script],
                          env=dict(os.environ, RAYCTL_TEMP_DIR=temp_dir),
                          capture_output=True, text=True, timeout=90)


def _redis(temp_dir: str) -> psutil.Process | None:
    from runtime.session import all_sessions, session_processes

    procs = [p for s in all_sessions(temp_dir) for p in session_processes(s)]
    return next((p for p in procs if "-server" in p.name()), None)


def test_redis_killed_under_a_cluster_is_restarted_and_nothing_is_lost(tmp_path) -> None:
    temp_dir = str(tmp_path / "rayctl")
    started = _rayctl(temp_dir, "start", "--head", "--num-cpus", "2")
    ours: list[psutil.Process] = []
    try:
        assert started.returncode == 0, started.stderr
        made = _driver(temp_dir, """
            @rt.remote
            class Keeper:
                def __init__(self):
                    self.n = 0
                def incr(self):
                    self.n += 1
                    return self.n
            keeper = Keeper.options(name="keeper", lifetime="detached").remote()
            print(rt.get(keeper.incr.remote()))
        """)
        assert made.returncode == 0 and made.stdout.split() == ["1"], made.stderr
        redis = _redis(temp_dir)
        assert redis is not None
        redis.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        redis.wait(10)

        after = _driver(temp_dir, """
            @rt.remote
            class Echo:
                def echo(self, value):
                    return value
            @rt.remote
            def square(x):
                return x * x
            print(rt.get(rt.get_actor("keeper").incr.remote(), timeout=30))
            print(rt.get(Echo.remote().echo.remote("new"), timeout=30))
            print(rt.get(square.remote(7), timeout=30))
            print(sum(n["Alive"] for n in rt.nodes()))
        """)
        recovered_s = time.monotonic() - killed_at
        assert after.returncode == 0, after.stderr
        assert "redis" not in after.stderr.lower(), after.stderr  # no raw redis error reached it
        assert after.stdout.split() == ["2", "new", "49", "1"]  # the actor kept its state
        assert recovered_s < 10, f"{recovered_s:.1f} s from the kill to a new driver's results"
        print(f"recovered in {recovered_s:.2f} s")
        again = wait_for(lambda: _redis(temp_dir), 10, "the restarted Redis")
        assert again.pid != redis.pid
        from runtime.session import all_sessions, session_processes

        ours = [p for s in all_sessions(temp_dir) for p in session_processes(s)]
    finally:
        stopped = _rayctl(temp_dir, "stop")
    assert stopped.returncode == 0, stopped.stderr
    _, alive = psutil.wait_procs(ours, timeout=10)
    assert not alive, alive

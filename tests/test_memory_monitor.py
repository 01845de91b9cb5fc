"""The memory monitor: which worker it kills over the threshold, and how it reads node memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from runtime.exceptions import OutOfMemoryError, RuntimeBaseError
from runtime.raylet.memory_guard import MemoryGuard, MemoryGuardSettings
from runtime.raylet.memory_monitor import (
    RunningWork,
    Victim,
    VictimClass,
    WorkKind,
    oom_message,
    over_threshold,
    pick_victim,
)
from runtime.raylet.node_memory import (
    MemorySnapshot,
    file_reader,
    read_cgroup,
    read_meminfo,
    read_node_memory,
)


def task(pid: int, owner: str, started: float, retriable: bool = True) -> RunningWork:
    return RunningWork(pid, WorkKind.TASK, owner, started, retriable)


def actor(pid: int, started: float, retriable: bool = True) -> RunningWork:
    return RunningWork(pid, WorkKind.ACTOR, "driver", started, retriable)


def test_nothing_running_nothing_killed() -> None:
    assert pick_victim([]) is None


def test_newest_retriable_task_is_killed_first() -> None:
    victim = pick_victim([task(1, "a", 1.0), task(2, "a", 3.0), task(3, "a", 2.0)])
    assert victim is not None
    assert (victim.work.worker_pid, victim.why) == (2, VictimClass.RETRIABLE_TASK)


def test_owner_with_most_retriable_tasks_loses_first() -> None:
    running = [task(1, "small", 9.0), task(2, "big", 1.0), task(3, "big", 2.0)]
    victim = pick_victim(running)
    assert victim is not None and victim.work.worker_pid == 3


def test_tasks_before_actors_before_the_last_resort() -> None:
    running = [actor(1, 5.0), task(2, "a", 1.0), task(3, "a", 9.0, retriable=False)]
    victim = pick_victim(running)
    assert victim is not None and victim.work.worker_pid == 2
    victim = pick_victim([actor(1, 5.0), task(3, "a", 9.0, retriable=False)])
    assert victim is not None and victim.why is VictimClass.RESTARTABLE_ACTOR
    victim = pick_victim([actor(1, 5.0, retriable=False), task(3, "a", 9.0, retriable=False)])
    assert victim is not None
    assert (victim.work.worker_pid, victim.why) == (3, VictimClass.LAST_RESORT)


def test_threshold_is_strict_and_zero_disables() -> None:
    memory = MemorySnapshot(used_bytes=96, total_bytes=100)
    assert over_threshold(memory, 0.95)
    assert not over_threshold(MemorySnapshot(95, 100), 0.95)
    assert not over_threshold(memory, 0.0)


def test_message_names_node_usage_threshold_and_fix() -> None:
    victim = pick_victim([task(7, "a", 1.0)])
    assert victim is not None
    text = oom_message("node-1", MemorySnapshot(3 * 1024**3, 4 * 1024**3), 0.5, victim)
    for part in ("node-1", "3.00 GiB of 4.00 GiB", "75%", "50%", "num_cpus", "more memory"):
        assert part in text
    assert issubclass(OutOfMemoryError, RuntimeBaseError)


def test_cgroup_v2_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("1000\n")
    (tmp_path / "memory.current").write_text("250\n")
    assert read_cgroup(tmp_path) == MemorySnapshot(250, 1000)
    (tmp_path / "memory.max").write_text("max\n")
    assert read_cgroup(tmp_path) is None


def test_cgroup_v1_limit_without_dropable_cache(tmp_path: Path) -> None:
    v1 = tmp_path / "memory"
    v1.mkdir()
    (v1 / "memory.limit_in_bytes").write_text("1000\n")
    (v1 / "memory.usage_in_bytes").write_text("600\n")
    (v1 / "memory.stat").write_text("cache 300\ntotal_inactive_file 100\n")
    assert read_cgroup(tmp_path) == MemorySnapshot(500, 1000)
    (v1 / "memory.limit_in_bytes").write_text(str(1 << 62))
    assert read_cgroup(tmp_path) is None


def test_meminfo_used_is_total_minus_available(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 400 kB\n")
    assert read_meminfo(meminfo) == MemorySnapshot(600 * 1024, 1000 * 1024)
    real = read_node_memory()
    assert 0 < real.used_bytes < real.total_bytes


def test_file_reader_rereads(tmp_path: Path) -> None:
    path = tmp_path / "memory.json"
    read = file_reader(path)
    path.write_text(json.dumps({"used_bytes": 10, "total_bytes": 100}))
    assert read().fraction == 0.1
    path.write_text(json.dumps({"used_bytes": 96, "total_bytes": 100}))
    assert read().fraction == 0.96


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_guard_kills_the_newest_retriable_worker_only_over_the_threshold(tmp_path: Path) -> None:
    memory_file = tmp_path / "memory.json"
    memory_file.write_text(json.dumps({"used_bytes": 90, "total_bytes": 100}))
    procs = [_sleeper(), _sleeper()]
    try:
        running = [task(procs[0].pid, "a", 1.0), task(procs[1].pid, "a", 2.0)]
        messages: list[str] = []

        def kill(victim: Victim, message: str) -> None:
            os.kill(victim.work.worker_pid, signal.SIGKILL)
            messages.append(message)

        guard = MemoryGuard(
            "node-1", MemoryGuardSettings(), file_reader(memory_file), lambda: running, kill
        )
        assert guard.check_once() is None
        assert all(p.poll() is None for p in procs)
        memory_file.write_text(json.dumps({"used_bytes": 96, "total_bytes": 100}))
        victim = guard.check_once()
        assert victim is not None and victim.work.worker_pid == procs[1].pid
        assert procs[1].wait(timeout=10) == -signal.SIGKILL
        assert procs[0].poll() is None
        assert "node-1" in messages[0] and "96%" in messages[0]
        assert not MemoryGuard("n", MemoryGuardSettings(0.0), read_node_memory, list, kill).enabled
    finally:
        for p in procs:
            p.kill()
            p.wait()

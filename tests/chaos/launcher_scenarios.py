"""Scenarios on a cluster made by `rayctl up` on the local provider (real slots, the head's
supervisor running the GCS and the monitor): the monitor killed during scale-up, and `down`
interrupted at some point then run again. Each takes a fresh root directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import yaml
from harness import (
    ScenarioResult,
    kill_leftovers,
    recorded_shm_dirs,
    shm_bytes,
    sigkill,
    wait_processes_gone,
)
from runtime_scenarios import _wait
from workloads import TaskStream

from providers.local import LocalProvider

NAME = "chaos"


class UpCluster:
    """A `rayctl up` cluster under `root`: HOME, RAYCTL_TEMP_DIR and the slots all live there."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_file = self.root / "cluster.yaml"
        section = {"type": "local", "state_dir": str(self.root / "slots"), "terminate_grace_s": 1}
        self.config_file.write_text(
            yaml.safe_dump(
                {
                    "cluster_name": NAME,
                    "max_workers": 4,
                    "provider": section,
                    "head_node_type": "head",
                    "available_node_types": {
                        "head": {"resources": {"CPU": 0}},
                        "cpu": {"resources": {"CPU": 1}, "max_workers": 4},
                    },
                }
            )
        )
        self.env = {
            **os.environ,
            "HOME": str(self.root / "home"),
            "RAYCTL_TEMP_DIR": str(self.root / "tmp"),
        }
        self.provider = LocalProvider(NAME, section, {"head": {}, "cpu": {}})

    def cli(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "autoscaler.cli", *args, str(self.config_file), "-y"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, *args: str) -> str:
        proc = self.cli(*args)
        output = proc.communicate(timeout=120)[0]
        if proc.returncode != 0:
            raise RuntimeError(f"rayctl {args[0]} failed: {output[-2000:]}")
        return output

    def head(self) -> dict[str, str]:
        path = self.root / "home" / ".rayctl" / "clusters" / NAME / "head.json"
        record: dict[str, str] = json.loads(path.read_text())
        return record

    def workers(self) -> list[str]:
        return [i.id for i in self.provider.list_instances() if not i.is_head]

    def monitor(self) -> psutil.Process | None:
        path = Path(self.head()["session_dir"]) / "pids" / "monitor.pid"
        try:
            record = json.loads(path.read_text())
            proc = psutil.Process(record["pid"])
            return proc if abs(proc.create_time() - record["create_time"]) < 0.01 else None
        except (OSError, ValueError, psutil.Error):
            return None


@contextmanager
def up_cluster(root: str, leaks: dict[str, int]) -> Iterator[UpCluster]:
    """`rayctl up`; on exit `down` (again if interrupted), then the leaks are measured."""
    cluster = UpCluster(root)
    try:
        cluster.run("up")
        yield cluster
    finally:
        import runtime as rt

        if rt.is_initialized():
            rt.shutdown()
        shm_dirs = recorded_shm_dirs(root)
        try:
            cluster.run("down")
        finally:
            leaks["slots"] = len(cluster.provider.list_instances())
            leaks["processes"] = wait_processes_gone(root, 5)
            leaks["shm"] = shm_bytes(shm_dirs + recorded_shm_dirs(root))
            kill_leftovers(root)
            cluster.provider.terminate([i.id for i in cluster.provider.list_instances()])
            for directory in shm_dirs:
                shutil.rmtree(directory, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)


def monitor_killed(root: str, at_slot: bool, tasks: int = 2, task_s: float = 3.0) -> ScenarioResult:
    """The monitor SIGKILLed when the demand is submitted, or (`at_slot`) as soon as the first
    worker slot appears, mid-install: the supervisor restarts it, no task is lost, and no more
    slots are made than the same workload makes without a kill (run first, as the baseline: the
    autoscaler makes 3 or 4 slots for these two 1-CPU tasks on this tree, kill or not: see the
    note in docs/RELIABILITY.md). A slot whose install died with the monitor is terminated and
    replaced by design (the restarted monitor cannot know how far its start commands got):
    the replacement is not counted as a duplicate, and the failed slot must be gone."""
    baseline, _, _, _, _ = _scale_up(root + "-baseline", None, tasks, task_s)
    seen, replaced, stream, recover, leaks = _scale_up(root, at_slot, tasks, task_s)
    extra = max(0, len(seen) - len(replaced) - len(baseline))  # beyond a no-kill run
    when = "as the first slot appears" if at_slot else "as demand arrives"
    return ScenarioResult(
        f"monitor killed {when}",
        stream.lost,
        leaks["processes"],
        leaks["slots"] + extra,
        leaks["shm"],
        recover,
        note=f"{len(seen)} worker slots made, {len(replaced)} of them replaced after their "
        f"install died with the monitor ({len(baseline)} made without a kill); "
        "recover = the monitor running again",
    )


def _scale_up(
    root: str, kill_at_slot: bool | None, tasks: int, task_s: float
) -> tuple[set[str], set[str], TaskStream, float | None, dict[str, int]]:
    """Two 1-CPU tasks on a 0-CPU head; the monitor killed unless `kill_at_slot` is None.
    Returns the worker slots seen, those whose install failed (replaced), the finished stream,
    the recovery and the leaks."""
    import runtime as rt
    from runtime.auth import read_token_file

    leaks: dict[str, int] = {}
    seen: set[str] = set()
    recover: float | None = None
    with up_cluster(root, leaks) as cluster:
        head = cluster.head()
        rt.init(address=head["address"], _token=read_token_file(head["token_file"]))
        stream = TaskStream(tasks, task_s).start()
        if kill_at_slot:
            _wait(lambda: _note_workers(cluster, seen), 30)
        if kill_at_slot is not None:
            recover = _kill_monitor(cluster)
        while stream.running:
            seen.update(cluster.workers())
            time.sleep(0.1)
        stream.join()
        replaced = _install_failed(cluster) & seen
    return seen, replaced, stream, recover, leaks


def _install_failed(cluster: UpCluster) -> set[str]:
    """Slots whose history (`rayctl status --json`) has a failed install."""
    out = subprocess.run(
        [sys.executable, "-m", "autoscaler.cli", "status", "--json", str(cluster.config_file)],
        env=cluster.env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    return {
        row["cloud_instance_id"]
        for row in json.loads(out)["instances"]
        if any(str(status).upper() == "RAYLET_INSTALL_FAILED" for status, *_ in row["history"])
    }


def _note_workers(cluster: UpCluster, seen: set[str]) -> bool:
    """Add the worker slots listed now to `seen`; whether there is any yet."""
    seen.update(cluster.workers())
    return bool(seen)


def _kill_monitor(cluster: UpCluster) -> float | None:
    """SIGKILL the monitor; seconds until the supervisor has started a new one (None: never)."""
    old = cluster.monitor()
    if old is None:
        return None
    killed_at = sigkill(old)
    back = _wait(lambda: (m := cluster.monitor()) is not None and m.pid != old.pid, 10)
    return time.monotonic() - killed_at if back else None


def down_interrupted(
    root: str, after_s: float, how: signal.Signals = signal.SIGINT
) -> ScenarioResult:
    """A cluster with two workers; `down` interrupted `after_s` into its run, then run again:
    nothing is left (no slot, process or shm directory)."""
    import runtime as rt
    from runtime.auth import read_token_file

    leaks: dict[str, int] = {}
    recover: float | None = None
    with up_cluster(root, leaks) as cluster:
        head = cluster.head()
        rt.init(address=head["address"], _token=read_token_file(head["token_file"]))
        stream = TaskStream(2, 0.1).start()
        stream.join()
        rt.shutdown()
        down = cluster.cli("down")
        time.sleep(after_s)  # the point of interruption is the scenario's parameter
        interrupted_at = time.monotonic()
        down.send_signal(how)
        down.communicate(timeout=60)
        cluster.run("down")
        recover = time.monotonic() - interrupted_at
    return ScenarioResult(
        f"down interrupted ({how.name}) after {after_s:g} s",
        stream.lost,
        leaks["processes"],
        leaks["slots"],
        leaks["shm"],
        recover,
        note="recover = the second down finished",
    )

"""The autoscaler benchmark workload, run once against Ray's autoscaler (fake multi-node provider)
and once against ours (local provider, real processes). Each side starts its own head with the
autoscaler from a generated config (head 0 CPUs, one worker type {CPU: 1}, max 1), measures, then
stops everything it started. Prints a cumulative JSON snapshot on stdout after each line.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

# Run as a script, this file's folder comes first on sys.path, and bench/autoscaler.py would hide
# the `autoscaler` package: drop that folder (nothing here imports from it).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

POLL_S = 0.02


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(POLL_S)


def one_cpu_task() -> str:
    return "ok"


class Side:
    """One backend: start the head with its autoscaler, the measurements' hooks, teardown."""

    name = ""

    def __init__(self, work: Path, idle_s: float) -> None:
        self.work, self.idle_s = work, idle_s
        self.rt: Any = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def launch_decisions_after(self, t0: float) -> float | None:
        """Unix time of the autoscaler's first launch decision made at or after t0."""
        raise NotImplementedError

    def request(self, num_cpus: int) -> None:
        """request_resources(num_cpus=...) through the side's SDK."""
        raise NotImplementedError

    def launch_history(self, t0: float) -> dict[str, float] | None:
        return None  # ours only: lifecycle steps of the node launched after t0

    def idle_since(self) -> float | None:
        return None  # ours only: the GCS's idle_since of the worker node

    def workers_alive(self) -> int:
        return sum(1 for n in self.rt.nodes() if n["Alive"] and not _is_head(n))


def _is_head(node: dict[str, Any]) -> bool:
    if "IsHead" in node:
        return bool(node["IsHead"])
    return float(node.get("Resources", {}).get("CPU", 0)) == 0  # Ray: the 0-CPU head


class Ours(Side):
    name = "rayctl"

    rayctl = "rayctl"

    def start(self) -> None:
        os.environ["RAYCTL_TEMP_DIR"] = str(self.work / "rt")
        os.environ["RAYCTL_LOCAL_STATE_DIR"] = str(self.work / "slots")
        bindir = Path(sys.executable).parent
        self.rayctl = str(bindir / "rayctl")
        config = {
            "cluster_name": "benchscale", "max_workers": 1,
            "provider": {"type": "local", "state_dir": str(self.work / "slots"),
                         "terminate_grace_s": 1},
            "head_node_type": "head",
            "available_node_types": {
                "head": {"resources": {"CPU": 0}, "max_workers": 0},
                "cpu": {"resources": {"CPU": 1}, "max_workers": 1, "idle_timeout_s": self.idle_s},
            },
            "worker_start_ray_commands": [f"{bindir}/rayctl start --address=$RAYCTL_HEAD_ADDRESS"],
        }
        path = self.work / "cluster.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        subprocess.run([self.rayctl, "start", "--head", "--num-cpus", "0", "--autoscaling-config",
                        str(path)], check=True, capture_output=True, timeout=60)
        import redis

        import runtime
        from autoscaler.lifecycle_store import RedisLifecycleStore
        from runtime.auth import read_token_file
        from runtime.gcs.schema import GcsKeys, KvKey, KvNamespace
        from runtime.node import read_address_file

        self.rt = runtime
        info = read_address_file()
        assert info is not None, "rayctl start --head wrote no address file"
        spec = json.loads((Path(info["session_dir"]) / "supervisor.json").read_text())
        argv = next(s["argv"] for s in spec["services"] if s["name"] == "monitor")
        redis_address, cluster_id = argv[argv.index("--redis-address") + 1], argv[
            argv.index("--cluster-id") + 1]
        host, _, port = redis_address.rpartition(":")
        self.token = read_token_file(info["token_file"])
        self.redis = redis.Redis(host=host, port=int(port), password=self.token)
        self.store = RedisLifecycleStore(self.redis, cluster_id)
        self.cluster_id, self.gcs_address = cluster_id, info["address"]
        # the monitor is up once it published what it can launch (it subscribes right before)
        launchable = GcsKeys(cluster_id).kv(KvNamespace.AUTOSCALER)
        wait_until(lambda: self.redis.hget(launchable, KvKey.LAUNCHABLE_NODE_TYPES), 60,
                   "monitor up")
        runtime.init(address="auto")

    def launch_decisions_after(self, t0: float) -> float | None:
        from autoscaler.decisions import DecisionAction

        times = [d.at for d in self.store.decisions(50)
                 if d.action is DecisionAction.LAUNCH and d.at >= t0]
        return min(times) if times else None

    def launch_history(self, t0: float) -> dict[str, float] | None:
        """The lifecycle steps of the instance launched after t0, in ms since t0."""
        for record in self.store.all():
            if record.history and record.history[0].at >= t0:
                return {c.status.value: round((c.at - t0) * 1e3) for c in record.history}
        return None

    def request(self, num_cpus: int) -> None:
        # by name: mypy, run from bench/, would resolve `autoscaler` to bench/autoscaler.py
        importlib.import_module("autoscaler.sdk").request_resources(num_cpus=num_cpus)

    def idle_since(self) -> float | None:
        from autoscaler.monitor import gcs_nodes
        from runtime.protocol.states import NodeState

        workers = [n for n in gcs_nodes(self.gcs_address, self.token)()
                   if not n.is_head and n.state == NodeState.ALIVE]
        return workers[0].idle_since if workers and workers[0].idle_since else None

    def stop(self) -> None:
        if self.rt is not None and self.rt.is_initialized():
            self.rt.shutdown()
        subprocess.run([self.rayctl, "stop", "--grace-period", "3"], capture_output=True,
                       timeout=60)
        from providers.local import LocalProvider

        provider = LocalProvider("benchscale", {"type": "local", "state_dir": str(self.work / "slots")},
                                 {"head": {}, "cpu": {}})
        left = [i.id for i in provider.list_instances()]
        if left:
            provider.terminate(left)
        kill_processes_naming(str(self.work))  # anything a failed start left behind


RAY_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")
RAY_LAUNCH = re.compile(r"new nodes for launch|Adding \d+ node\(s\) of type")


class RaySide(Side):
    name = "ray"

    def start(self) -> None:
        os.environ.update({"RAY_TMPDIR": str(self.work), "RAY_FAKE_CLUSTER": "1",
                           "RAY_USAGE_STATS_ENABLED": "0"})
        config: dict[str, Any] = {
            "cluster_name": "benchscale", "max_workers": 1, "upscaling_speed": 1.0,
            "idle_timeout_minutes": self.idle_s / 60.0,
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                         "disable_node_updaters": True, "disable_launch_config_check": True},
            "available_node_types": {
                "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
                "ray.worker.cpu": {"resources": {"CPU": 1}, "node_config": {},
                                   "min_workers": 0, "max_workers": 1},
            },
            "head_node_type": "ray.head.default", "auth": {"ssh_user": "ubuntu"},
            "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
            "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
            "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
            "worker_setup_commands": [], "head_start_ray_commands": [],
            "worker_start_ray_commands": [],
        }
        port = _free_port()
        from ray._private.services import get_node_ip_address

        # the fake provider starts its nodes against this GCS (it assumes port 6379 otherwise)
        config["provider"]["gcs_address"] = f"{get_node_ip_address()}:{port}"
        path = self.work / "cluster.json"
        path.write_text(json.dumps(config))
        ray_bin = str(Path(sys.executable).parent / "ray")
        subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--num-cpus=0",
                        f"--autoscaling-config={path}"], check=True, capture_output=True,
                       timeout=120)
        import ray

        self.rt = ray
        ray.init(address="auto")
        self.monitor_log = wait_until(lambda: next(iter(self.work.glob(
            "**/session_*/logs/monitor.log")), None), 60, "Ray's monitor log")

    def launch_decisions_after(self, t0: float) -> float | None:
        for line in self.monitor_log.read_text(errors="replace").splitlines():
            stamp = RAY_LOG_TIME.match(line)
            if stamp and RAY_LAUNCH.search(line):
                at = datetime.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                if at >= t0:
                    return at
        return None

    def request(self, num_cpus: int) -> None:
        from ray.autoscaler.sdk import request_resources

        request_resources(num_cpus=num_cpus)

    def stop(self) -> None:
        if self.rt is not None and self.rt.is_initialized():
            self.rt.shutdown()
        # never `ray stop`: it stops every Ray process on the machine, other people's too
        kill_processes_naming(str(self.work))


def dump_logs(work: Path, lines: int = 40) -> None:
    """The tail of every log of the run, on stderr (kept by bench/autoscaler.py), before the
    temp dir holding them is removed."""
    for log in sorted(work.rglob("*.log")) + sorted(work.rglob("*.out")):
        try:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        if tail:
            print(f"--- {log.relative_to(work)}", *tail, sep="\n", file=sys.stderr)


def kill_processes_naming(text: str) -> None:
    """Kill every process whose command line names `text` (our session dir), and descendants."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid != os.getpid() and text in " ".join(proc.info["cmdline"] or []):
            found[proc.pid] = proc
            try:
                found.update({c.pid: c for c in proc.children(recursive=True)})
            except psutil.NoSuchProcess:
                continue
    for proc in found.values():
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(list(found.values()), timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Workload:
    """(a) submit → done on a new node, wake-up on task demand, (c) scale-down after the idle
    timeout, repeated `rounds` times; then (d) wake-up on request_resources."""

    def __init__(self, side: Side, rounds: int) -> None:
        self.side, self.rounds = side, rounds
        self.results: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.info: dict[str, Any] = {"idle_timeout_s": side.idle_s, "rounds": []}

    def emit(self) -> None:
        print(json.dumps({"backend": self.side.name, "results": self.results,
                          "errors": self.errors, "info": self.info}), flush=True)

    def run(self) -> None:
        side = self.side
        try:
            start = time.perf_counter()
            side.start()
            self.info["head_start_s"] = round(time.perf_counter() - start, 2)
            task = side.rt.remote(num_cpus=1)(one_cpu_task)
            for _ in range(self.rounds):
                self.info["rounds"].append(self.one_round(task))
                self.emit()
            self.summarize()
            self.emit()
            self.request_wakeup()
        except Exception as exc:
            self.errors["run"] = f"{type(exc).__name__}: {exc}"[:400]
            dump_logs(side.work)
        finally:
            self.emit()
            side.stop()

    def one_round(self, task: Any) -> dict[str, float | None]:
        side = self.side
        wait_until(lambda: side.workers_alive() == 0, 120, "no worker before the round")
        t0 = time.time()
        result = side.rt.get(task.remote(), timeout=120)
        done = time.time()
        assert result == "ok", result
        idle_since = side.idle_since()  # ours: the GCS's figure; Ray: not exposed
        wake = wait_until(lambda: side.launch_decisions_after(t0), 30, "launch decision")
        wait_until(lambda: side.workers_alive() == 0, 120 + side.idle_s, "scale-down")
        gone = time.time()
        idle_from = idle_since or done
        history = side.launch_history(t0)
        if history:
            self.info.setdefault("lifecycle_ms_since_submit", []).append(history)
        return {"submit_to_done_s": done - t0, "task_wakeup_ms": (wake - t0) * 1e3,
                "scale_down_after_timeout_s": gone - idle_from - side.idle_s,
                "idle_since_from_gcs": idle_since is not None}

    def summarize(self) -> None:
        rounds = self.info["rounds"]
        for key in ("submit_to_done_s", "task_wakeup_ms", "scale_down_after_timeout_s"):
            self.results[key] = statistics.median(r[key] for r in rounds)

    def request_wakeup(self) -> None:
        side = self.side
        t0 = time.time()
        side.request(1)
        try:
            wake = wait_until(lambda: side.launch_decisions_after(t0), 30, "launch decision")
            self.results["request_wakeup_ms"] = (wake - t0) * 1e3
            wait_until(lambda: side.workers_alive() == 1, 60, "requested node up")
        finally:
            side.request(0)
        wait_until(lambda: side.workers_alive() == 0, 120 + side.idle_s, "scale-down")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("ray", "rayctl"), required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle-s", type=float, default=6.0)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs) for a look")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rayctl-bench-as-"))
    try:
        side: Side = Ours(work, args.idle_s) if args.backend == "rayctl" else RaySide(work, args.idle_s)
        Workload(side, args.rounds).run()
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scenarios on a test cluster (runtime.cluster_utils: a head and raylets on this machine, the
driver in this process): kill -9 of a worker, a raylet, the GCS, Redis or a driver mid-workload.
Each takes a fresh root directory and returns a ScenarioResult; nothing outlives it."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil
from harness import (
    ScenarioResult,
    file_bytes,
    kill_leftovers,
    processes_under,
    recorded_shm_dirs,
    shm_bytes,
    sigkill,
    wait_processes_gone,
)
from workloads import TaskStream

from runtime.cluster_utils import Cluster
from runtime.session import all_sessions


@contextmanager
def chaos_cluster(root: str, leaks: dict[str, int], **head: Any) -> Iterator[Cluster]:
    """A connected cluster under `root`; on exit it is shut down and what it left behind is
    written into `leaks` (processes, shm bytes), then anything left is killed and removed."""
    cluster = Cluster(head_node_args={"num_cpus": 2, **head}, temp_dir=root, death_timeout_s=1.5)
    try:
        cluster.connect()
        yield cluster
    finally:
        shm_dirs = recorded_shm_dirs(root)
        cluster.shutdown()
        leaks["processes"] = wait_processes_gone(root, 5)
        leaks["shm"] = shm_bytes(shm_dirs)
        kill_leftovers(root)
        for directory in shm_dirs:
            shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def _named(root: str, word: str) -> list[psutil.Process]:
    return [p for p in processes_under(root) if word in " ".join(p.cmdline())]


def worker_killed(
    root: str, tasks: int = 2000, task_s: float = 0.01, every_s: float = 0.5, timeout_s: float = 120
) -> ScenarioResult:
    """A worker SIGKILLed every `every_s` while a stream of retryable tasks runs; a stream not
    done after `timeout_s` counts what is still pending as lost."""
    leaks: dict[str, int] = {}
    with chaos_cluster(root, leaks):
        stream = TaskStream(tasks, task_s, timeout_s=timeout_s).start()
        kills = []
        while stream.completed < tasks and stream.running:
            time.sleep(every_s)
            workers = _named(root, "runtime.worker")
            if workers and stream.completed < tasks:
                kills.append(sigkill(random.choice(workers)))
        stream.join()
    last = max(stream.done_at, default=0.0)
    # a kill after the last success has nothing left to recover: only earlier ones count
    recover = max((stream.first_success_after(k) or 0.0 for k in kills if k < last), default=None)
    return ScenarioResult(
        f"worker killed every {every_s:g} s ({tasks} tasks)",
        stream.lost,
        leaks["processes"],
        0,
        leaks["shm"],
        recover,
        note=f"{len(kills)} kills; recover = slowest first success after a kill" + _errors(stream),
    )


def raylet_killed(root: str, tasks: int = 60, task_s: float = 0.1) -> ScenarioResult:
    """A non-head raylet SIGKILLed mid-run: its tasks are retried, the GCS marks it DEAD."""
    import runtime as rt

    leaks: dict[str, int] = {}
    with chaos_cluster(root, leaks, num_cpus=1) as cluster:
        victim = cluster.add_node(num_cpus=2)
        _wait(lambda: _alive(rt, victim.node_id), 10)
        stream = TaskStream(tasks, task_s).start()
        _wait(lambda: stream.completed >= tasks // 4, 30)
        killed_at = sigkill(psutil.Process(victim.procs[-1].pid))
        dead = _wait(lambda: not _alive(rt, victim.node_id), 10)
        recover = time.monotonic() - killed_at if dead else None
        stream.join()
    return ScenarioResult(
        f"non-head raylet killed ({tasks} tasks)",
        stream.lost,
        leaks["processes"],
        0,
        leaks["shm"],
        recover,
        recover_limit_s=5,
        note="recover = node DEAD in the GCS" + _errors(stream),
    )


def gcs_killed(root: str, tasks: int = 300, task_s: float = 0.02) -> ScenarioResult:
    """The GCS (under the head's supervisor) SIGKILLed mid-run: restarted, nothing lost, a new
    actor is created after it."""
    leaks: dict[str, int] = {}
    with chaos_cluster(root, leaks, supervised_services=[]):
        stream = TaskStream(tasks, task_s).start()
        _wait(lambda: stream.completed >= tasks // 4, 30)
        killed_at = sigkill(_named(root, "runtime.gcs.server")[0])
        back = _wait(_gcs_answers, 10)
        recover = time.monotonic() - killed_at if back else None
        actor_ok = _new_actor_answers(time.monotonic() + 10)
        stream.join()
    return ScenarioResult(
        f"GCS killed ({tasks} tasks)",
        stream.lost + (not actor_ok),
        leaks["processes"],
        0,
        leaks["shm"],
        recover,
        note="recover = the GCS answers again; then a new actor must answer" + _errors(stream),
    )


def redis_killed(root: str, tasks: int = 300, task_s: float = 0.02) -> ScenarioResult:
    """Redis SIGKILLed mid-run: the supervisor restarts it from its append-only file; a new actor
    is created and answers within 10 s; the task stream loses nothing."""
    leaks: dict[str, int] = {}
    with chaos_cluster(root, leaks, supervised_services=[]):
        stream = TaskStream(tasks, task_s).start()
        _wait(lambda: stream.completed >= tasks // 4, 30)
        redis = _recorded(root, "redis")
        killed_at = sigkill(redis)
        actor_ok = _new_actor_answers(killed_at + 10)
        recover = time.monotonic() - killed_at if actor_ok else None
        stream.join()
    return ScenarioResult(
        f"Redis killed ({tasks} tasks)",
        stream.lost,
        leaks["processes"],
        0,
        leaks["shm"],
        recover,
        note="recover = a new actor created and answering" + _errors(stream),
    )


DRIVER = textwrap.dedent("""
    import sys, time
    import numpy as np
    import runtime as rt
    rt.init(address=sys.argv[1], _temp_dir=sys.argv[2])

    @rt.remote(resources={"far": 1})
    def make(i, n):
        return np.full(n, i, dtype=np.uint8)

    held = [make.remote(i, int(sys.argv[4])) for i in range(int(sys.argv[3]))]
    rt.wait(held, num_returns=len(held), timeout=60)
    print("held", flush=True)
    time.sleep(600)
""")


def driver_killed(root: str, objects: int = 10, object_mb: int = 100) -> ScenarioResult:
    """A driver holding `objects` x `object_mb` MB made by tasks on a worker node is SIGKILLed:
    the node's shared memory must be empty again within 10 s."""
    leaks: dict[str, int] = {}
    with chaos_cluster(root, leaks, num_cpus=1) as cluster:
        node = cluster.add_node(
            num_cpus=2,
            resources={"far": 2},
            object_store_memory=(objects * object_mb + 64) * 1024**2,
        )
        env = {**os.environ, "RAYCTL_TOKEN_FILE": cluster.head.token_file}
        driver = subprocess.Popen(
            [
                sys.executable,
                "-c",
                DRIVER,
                cluster.address,
                root,
                str(objects),
                str(object_mb * 1024**2),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            held = driver.stdout.readline().strip() == "held" if driver.stdout else False
            before = file_bytes(node.shm_dir)  # the node lives on: its (empty) dir stays
            killed_at = sigkill(psutil.Process(driver.pid))
            freed = _wait(lambda: file_bytes(node.shm_dir) == 0, 10)
            recover = time.monotonic() - killed_at if freed else None
            held_after = file_bytes(node.shm_dir)
        finally:
            driver.kill()
            driver.wait()
    return ScenarioResult(
        f"driver killed holding {objects} x {object_mb} MB",
        int(not held),
        leaks["processes"],
        0,
        held_after + leaks["shm"],
        recover,
        note=f"{before} bytes held at the kill; recover = the node's shm empty",
    )


# --- small waits and checks ---------------------------------------------------------------------


def _wait(predicate: Callable[[], Any], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def _recorded(root: str, name: str) -> psutil.Process:
    """The process a session recorded as `name` (Redis retitles itself: no path in its argv)."""
    [session] = all_sessions(root)
    with open(os.path.join(session, "pids", f"{name}.pid")) as f:
        return psutil.Process(json.load(f)["pid"])


def _alive(rt: Any, node_id: str) -> bool:
    return any(n["NodeID"] == node_id and n["Alive"] for n in rt.nodes())


def _gcs_answers() -> bool:
    import grpc

    from runtime.api import _core
    from runtime.protocol import gcs_pb2

    try:
        _core().gcs_call("KvGet", gcs_pb2.KvRequest(ns="chaos", key="k"), timeout=0.5, retry_s=0)
        return True
    except grpc.RpcError:
        return False


def _new_actor_answers(deadline: float) -> bool:
    """Whether an actor created now answers a call before `deadline` (creation retried on
    error: a GCS without Redis may refuse it first)."""
    import runtime as rt

    @rt.remote(num_cpus=0)
    class Probe:
        def ping(self) -> str:
            return "pong"

    answer: list[str] = []

    def create_and_call() -> None:
        while time.monotonic() < deadline and not answer:
            try:
                probe = Probe.remote()  # type: ignore[attr-defined]
                answer.append(
                    rt.get(probe.ping.remote(), timeout=max(0.1, deadline - time.monotonic()))
                )
            except Exception:  # noqa: BLE001 - any failure before the deadline is retried
                time.sleep(0.2)

    caller = threading.Thread(target=create_and_call, daemon=True)
    caller.start()
    caller.join(max(0.0, deadline - time.monotonic()) + 1)
    return answer == ["pong"]


def _errors(stream: TaskStream) -> str:
    return f"; first error: {stream.errors[0]}" if stream.errors else ""

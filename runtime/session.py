"""Session directories and pid files: how `rayctl stop` (and the local provider) find exactly the
processes a session started and nothing else.

Layout: <temp_dir>/session_<cluster_id>/{logs/, pids/<name>.pid, token, redis/, spill/, shm_dirs}
A pid file holds {"pid": int, "create_time": float}; a process is ours only when both match, so a
recycled pid never gets killed.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import time
from collections.abc import Callable

import psutil

from runtime.private_state import ensure_private_dir


def session_dir_for(temp_dir: str, cluster_id: str) -> str:
    ensure_private_dir(temp_dir)
    path = os.path.join(temp_dir, f"session_{cluster_id}")
    for sub in ("logs", "pids", "redis", "spill"):
        os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
    return path


def record_pid(session_dir: str, name: str, pid: int) -> None:
    try:
        create_time = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return
    path = os.path.join(session_dir, "pids", f"{name}.pid")
    with open(path + ".tmp", "w") as f:
        json.dump({"pid": pid, "create_time": create_time}, f)
    os.rename(path + ".tmp", path)


def record_shm_dir(session_dir: str, shm_dir: str) -> None:
    with open(os.path.join(session_dir, "shm_dirs"), "a") as f:
        f.write(shm_dir + "\n")


def session_processes(session_dir: str) -> list[psutil.Process]:
    """The live processes recorded in a session's pid files (create time checked)."""
    procs = []
    # supervisors first, so that `stop` never races a supervisor restarting what it stops
    paths = sorted(glob.glob(os.path.join(session_dir, "pids", "*.pid")),
                   key=lambda p: (not os.path.basename(p).startswith("supervisor"), p))
    for path in paths:
        try:
            with open(path) as f:
                rec = json.load(f)
            proc = psutil.Process(rec["pid"])
            if abs(proc.create_time() - rec["create_time"]) < 0.01:
                procs.append(proc)
        except (OSError, ValueError, KeyError, psutil.Error):
            continue
    return procs


def stop_session(session_dir: str, grace_s: float = 3.0) -> list[int]:
    """SIGTERM every recorded process, SIGKILL what is left after `grace_s`, remove shm dirs."""
    procs = session_processes(session_dir)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    alive = _wait_gone(procs, grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    _wait_gone(alive, 2)
    remove_shm_dirs(session_dir)
    return [p.pid for p in procs]


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Those of `procs` still running at the deadline. A zombie counts as gone: the processes
    `rayctl start` left behind belong to init, which may reap them late (1.4 s on this VM) or,
    in a container without one, never (psutil.wait_procs would wait the whole grace period)."""
    deadline = time.monotonic() + timeout_s
    pending = procs
    while True:
        _, still = psutil.wait_procs(pending, timeout=0.02)  # reaps those that are our children
        pending = [p for p in still if _running(p)]
        if not pending or time.monotonic() >= deadline:
            return pending


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def remove_shm_dirs(session_dir: str) -> None:
    try:
        with open(os.path.join(session_dir, "shm_dirs")) as f:
            dirs = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        return
    for path in dirs:
        if os.path.basename(path).startswith("rayctl-"):
            shutil.rmtree(path, ignore_errors=True)


def all_sessions(temp_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(temp_dir, "session_*")))


def wait_for_file(path: str, timeout_s: float, procs: list[psutil.Popen] | None = None) -> str:
    """Wait until `path` exists; fail early if one of `procs` exited."""
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while not os.path.exists(path):
        for proc in procs or []:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(proc.args[:3])} exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)
    with open(path) as f:
        return f.read()


async def watch_parent(pid: int, on_gone: Callable[[], None]) -> None:
    """Call `on_gone` once process `pid` has exited (a private cluster dies with its driver)."""
    import asyncio

    while True:
        await asyncio.sleep(0.5)
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            on_gone()
            return

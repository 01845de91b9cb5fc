"""Finding and stopping every process of a local slot, without ever touching a process that
merely reuses a recorded pid.

Two sources, both checked against psutil's create_time:
- process groups the runner started (recorded in the state file), and
- pid files written by the runtime: any `<slot_dir>/**/pids/*.pid` holding
  JSON `{"pid": int, "create_time": float}` (create_time as psutil reports it).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from providers.local.state import ProcessRecord

# psutil's create_time has a 10 ms resolution on Linux (clock ticks); a reused pid differs more.
CREATE_TIME_TOLERANCE_S = 0.05
KILL_WAIT_S = 3.0


def same_process(proc: psutil.Process, create_time: float) -> bool:
    try:
        return abs(proc.create_time() - create_time) <= CREATE_TIME_TOLERANCE_S
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def group_members(record: ProcessRecord) -> list[psutil.Process]:
    """Live processes of a recorded group. Empty when the pgid was reused: a process whose pid
    equals the pgid but started at another time means the old group is gone."""
    try:
        leader = psutil.Process(record.pgid)
        if not same_process(leader, record.create_time):
            return []
    except psutil.NoSuchProcess:
        pass  # the leader exited; its children may still hold the group
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) != record.pgid:
                continue
            # A group member started no earlier than its leader (a younger group cannot exist
            # while this one has members: the kernel does not reuse a live pgid).
            if proc.create_time() + CREATE_TIME_TOLERANCE_S >= record.create_time:
                members.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return members


def pid_file_processes(slot_dir: Path) -> list[psutil.Process]:
    """Processes named by pid files under the slot whose start time matches, with their
    descendants (workers a raylet forked belong to the slot too)."""
    found: list[psutil.Process] = []
    for pid_file in slot_dir.glob("**/pids/*.pid"):
        proc = _read_pid_file(pid_file)
        if proc is None:
            continue
        found.append(proc)
        try:
            found.extend(proc.children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return found


def _read_pid_file(path: Path) -> psutil.Process | None:
    try:
        data = json.loads(path.read_text())
        proc = psutil.Process(int(data["pid"]))
        create_time = float(data["create_time"])
    except (OSError, ValueError, KeyError, TypeError, psutil.NoSuchProcess):
        return None  # unreadable or long gone: nothing to stop
    return proc if same_process(proc, create_time) else None


def stop_processes(
    records: Iterable[ProcessRecord], slot_dirs: Iterable[Path], grace_s: float
) -> list[int]:
    """SIGTERM every process of the slots, SIGKILL what is left after `grace_s`.
    Returns the pids still alive at the end (normally none)."""
    records = list(records)
    slot_dirs = list(slot_dirs)
    targets = _collect(records, slot_dirs)
    _signal_all(targets, signal.SIGTERM)
    alive = _wait_gone(targets, grace_s)
    # Collect again: a group may have forked between the scan and the SIGTERM.
    leftovers = {p.pid: p for p in [*alive, *_collect(records, slot_dirs)] if _alive(p)}
    _signal_all(list(leftovers.values()), signal.SIGKILL)
    return [p.pid for p in _wait_gone(list(leftovers.values()), KILL_WAIT_S)]


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until every process exited; returns those still alive at the deadline. A zombie
    counts as gone: its parent (maybe a container's init that never reaps) owns it now."""
    deadline = time.monotonic() + timeout_s
    pending = procs
    while True:
        _, still = psutil.wait_procs(pending, timeout=0.05)  # also reaps our own children
        pending = [p for p in still if _alive(p)]
        if not pending or time.monotonic() >= deadline:
            return pending


def _collect(records: list[ProcessRecord], slot_dirs: list[Path]) -> list[psutil.Process]:
    me = os.getpid()
    procs: dict[int, psutil.Process] = {}
    for record in records:
        procs.update((p.pid, p) for p in group_members(record))
    for slot_dir in slot_dirs:
        procs.update((p.pid, p) for p in pid_file_processes(slot_dir))
    procs.pop(me, None)  # never the caller, whatever a pid file says
    return list(procs.values())


def _signal_all(procs: list[psutil.Process], sig: signal.Signals) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

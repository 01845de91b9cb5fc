"""The chaos harness: what one scenario measures and how its result is judged and printed.

A scenario starts real processes under one root directory, runs a workload, kills one process
with SIGKILL mid-workload and tears everything down. It reports a `ScenarioResult`: results lost,
processes leaked (anything still running that names the root in its command line or its
RAYCTL_* environment), provider slots leaked, shm bytes leaked (the cluster's recorded
/dev/shm/rayctl-* directories still on disk) and seconds from the kill to recovery."""

from __future__ import annotations

import glob
import os
import signal
import time
from dataclasses import dataclass

import psutil

RECOVER_LIMIT_S = 10.0
ENV_MARKERS = ("RAYCTL_TEMP_DIR", "RAYCTL_SESSION_DIR", "RAYCTL_TOKEN_FILE", "HOME")
COLUMNS = (
    "scenario",
    "lost",
    "procs leaked",
    "slots leaked",
    "shm bytes leaked",
    "recover s",
    "result",
)


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """One scenario's figures; `recover_s` is None when it never recovered."""

    name: str
    lost: int
    processes_leaked: int
    slots_leaked: int
    shm_bytes_leaked: int
    recover_s: float | None
    recover_limit_s: float = RECOVER_LIMIT_S
    note: str = ""

    @property
    def passed(self) -> bool:
        leaks = self.lost + self.processes_leaked + self.slots_leaked + self.shm_bytes_leaked
        return leaks == 0 and self.recover_s is not None and self.recover_s <= self.recover_limit_s

    def cells(self) -> tuple[str, ...]:
        recover = "never" if self.recover_s is None else f"{self.recover_s:.2f}"
        return (
            self.name,
            str(self.lost),
            str(self.processes_leaked),
            str(self.slots_leaked),
            str(self.shm_bytes_leaked),
            f"{recover} (≤ {self.recover_limit_s:g})",
            "PASS" if self.passed else "FAIL",
        )

    def line(self) -> str:
        text = "  ".join(f"{k}={v}" for k, v in zip(COLUMNS, self.cells(), strict=True))
        return f"{text}  {self.note}".rstrip()


def text_table(results: list[ScenarioResult]) -> str:
    rows = [COLUMNS, *(r.cells() for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def markdown_table(results: list[ScenarioResult]) -> str:
    lines = ["| " + " | ".join((*COLUMNS, "note")) + " |", "|" + " --- |" * (len(COLUMNS) + 1)]
    lines += ["| " + " | ".join((*r.cells(), r.note)) + " |" for r in results]
    return "\n".join(lines)


# --- what is left behind -----------------------------------------------------------------------


def processes_under(root: str, exclude: frozenset[int] = frozenset()) -> list[psutil.Process]:
    """Live processes that belong to `root`: named in their command line or RAYCTL_* env."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid in exclude or proc.pid == os.getpid():
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if root in " ".join(proc.cmdline()) or _env_names(proc, root):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _env_names(proc: psutil.Process, root: str) -> bool:
    env = proc.environ()
    return any(root in env.get(key, "") for key in ENV_MARKERS)


def wait_processes_gone(root: str, timeout_s: float, exclude: frozenset[int] = frozenset()) -> int:
    """How many processes of `root` are still running after up to `timeout_s` (teardown may
    still be reaping the last ones)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = processes_under(root, exclude)
        if not left or time.monotonic() > deadline:
            return len(left)
        time.sleep(0.1)


def kill_leftovers(root: str) -> None:
    """Whatever a failed scenario left running is killed, so that the next one starts clean."""
    for proc in processes_under(root):
        try:
            proc.kill()
        except psutil.Error:
            pass


def recorded_shm_dirs(root: str) -> list[str]:
    """Every object store directory recorded by a session under `root` (at any depth)."""
    files = glob.glob(os.path.join(root, "**", "session_*", "shm_dirs"), recursive=True)
    return sorted({line.strip() for f in files for line in open(f) if line.strip()})


def file_bytes(directory: str) -> int:
    """Bytes (tmpfs blocks) the files in `directory` hold: a live node's store, say."""
    held = 0
    for dirpath, _, names in os.walk(directory):
        for name in names:
            try:
                held += os.stat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return held


def shm_bytes(dirs: list[str]) -> int:
    """Bytes held in `dirs` after teardown; a directory left behind empty counts as 1 byte."""
    return sum(file_bytes(d) or int(os.path.isdir(d)) for d in dirs)


def sigkill(proc: psutil.Process) -> float:
    """SIGKILL `proc`, wait until it is gone; returns the monotonic time of the kill."""
    killed_at = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    try:
        proc.wait(10)
    except psutil.TimeoutExpired:
        pass
    return killed_at

"""Run one workload script per backend (Ray's venv, then ours; never both at once), follow its
JSON snapshots, and print the two as one table (rendered by bench/core_report.py: ratio = ×
better for rayctl): the shared plumbing of bench/core.py, multinode.py and autoscaler.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
from core_report import BACKENDS, Line, failures, markdown_table, rich_table
from rich.console import Console

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
__all__ = ["BACKENDS", "failures", "kill_tree", "markdown_table", "our_python", "print_report",
           "rich_table", "run_workload"]
err = Console(stderr=True, soft_wrap=True)


def our_python() -> Path:
    venv = REPO / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def run_workload(script: Path, backend: str, python: Path, args: Sequence[str], timeout_s: float,
                 log_path: Path, extra_env: Mapping[str, str],
                 units: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run `script --backend B ARGS`; its last JSON stdout line is the snapshot returned (with
    `run_error` on failure). Each figure is shown on stderr as it arrives (`units` by key)."""
    env = {**os.environ, **extra_env, "PYTHONPATH": f"{REPO}:{BENCH_DIR}"}
    cmd = [str(python), str(script), "--backend", backend, *args]
    err.print(f"bench: {backend}: {' '.join(cmd)}  (log: {log_path})", style="bold", markup=False)
    snapshots = Snapshots(backend, dict(units or {}))
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log,
                                text=True, start_new_session=True)
        assert proc.stdout is not None
        reader = threading.Thread(target=snapshots.read, args=(proc.stdout, log), daemon=True)
        reader.start()
        try:
            run_error = _wait(proc, timeout_s, log_path)
        finally:
            kill_tree(proc.pid)  # whatever the workload left behind (it should leave nothing)
        reader.join(timeout=10)
    snapshot = snapshots.latest or {"backend": backend, "results": {}, "errors": {}, "info": {}}
    if run_error:
        snapshot["run_error"] = run_error
    return snapshot


@dataclass(slots=True)
class Snapshots:
    """The workload's latest JSON snapshot, read from its stdout while it runs."""

    backend: str
    units: dict[str, str] = field(default_factory=dict)
    latest: dict[str, Any] | None = None
    shown: set[str] = field(default_factory=set)

    def read(self, stream: IO[str], log: IO[str]) -> None:
        for raw in stream:
            snapshot = _parse(raw)
            if snapshot is None:
                log.write(raw)  # task output streamed to the driver, not ours to parse
                log.flush()
                continue
            self.latest = snapshot
            self._show_progress(snapshot)

    def _show_progress(self, snapshot: dict[str, Any]) -> None:
        for key, value in snapshot.get("results", {}).items():
            if key not in self.shown:
                self.shown.add(key)
                note = f"bench: {self.backend:6} {key} = {value:,.3f} {self.units.get(key, '')}"
                err.print(note, style="dim", markup=False)
        for key, error in snapshot.get("errors", {}).items():
            if key not in self.shown:
                self.shown.add(key)
                err.print(f"bench: {self.backend:6} {key} failed: {error}", style="red", markup=False)


def _parse(raw: str) -> dict[str, Any] | None:
    if not raw.startswith("{"):
        return None
    try:
        snapshot = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return snapshot if isinstance(snapshot, dict) and "backend" in snapshot else None


def kill_tree(pid: int) -> None:
    """Kill a workload that overran and every process it started (its cluster included)."""
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(procs, timeout=10)


def _wait(proc: subprocess.Popen[str], timeout_s: float, log_path: Path) -> str | None:
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.wait()
        return f"killed after {timeout_s:.0f} s; lines shown as — did not finish (log: {log_path})"
    except KeyboardInterrupt:
        kill_tree(proc.pid)
        raise
    if code == 0:
        return None
    tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
    return f"exited with code {code} (log: {log_path}): " + " | ".join(tail)


def print_report(lines: Sequence[Line], report: Mapping[str, Any], title: str, markdown: bool,
                 notes: Sequence[str] = ()) -> int:
    """The table, `notes`, failures and each side's details; the exit code (1 if anything
    failed: the logs are kept, else removed)."""
    meta, runs = report["meta"], report["runs"]
    if markdown:
        print(f"{title}\n\n{markdown_table(lines, runs)}")
    else:
        Console(width=max(Console().width, 120)).print(rich_table(lines, runs, title))
    for note in notes:
        print(note)
    for note in failures(runs):
        print(note, file=sys.stderr)
    for backend, snapshot in runs.items():
        if snapshot is not None:
            print(f"{backend} details: {json.dumps(snapshot.get('info', {}))}")
    if failures(runs):
        print(f"logs kept in {meta['log_dir']}", file=sys.stderr)
        return 1
    shutil.rmtree(meta["log_dir"], ignore_errors=True)  # nothing failed: nothing to look at
    return 0

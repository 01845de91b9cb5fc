"""Core benchmark, rayctl side by side with Ray: `python bench/core.py [--quick] [--markdown]`.

Runs bench/core_workload.py once with Ray's venv (imported as `ray`) and once with ours (imported
as `runtime`), each in its own subprocess, then prints both figures and the ratio per line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
from core_report import BACKENDS, LINES, markdown_table, print_failures, rich_table
from ray_env import RAY_VERSION, ensure_ray_env
from rich.console import Console

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORKLOAD = BENCH_DIR / "core_workload.py"
UNITS = {line.key: line.unit for line in LINES}
err = Console(stderr=True, soft_wrap=True)


@dataclass(slots=True)
class Snapshots:
    """The workload's latest JSON snapshot, read from its stdout while it runs."""

    backend: str
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
                note = f"bench: {self.backend:6} {key} = {value:,.3f} {UNITS.get(key, '')}"
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


def run_workload(backend: str, python: Path, quick: bool, timeout_s: float,
                 log_dir: Path, extra_env: dict[str, str]) -> dict[str, Any]:
    """Run the workload for one backend; return its last snapshot (with `run_error` on failure)."""
    log_path = log_dir / f"core-{backend}.log"
    env = {**os.environ, **extra_env, "PYTHONPATH": str(REPO)}
    cmd = [str(python), str(WORKLOAD), "--backend", backend, *(["--quick"] if quick else [])]
    err.print(f"bench: {backend}: {' '.join(cmd)}  (log: {log_path})", style="bold", markup=False)
    snapshots = Snapshots(backend)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log,
                                text=True, start_new_session=True)
        assert proc.stdout is not None
        reader = threading.Thread(target=snapshots.read, args=(proc.stdout, log), daemon=True)
        reader.start()
        run_error = _wait(proc, timeout_s, log_path)
        reader.join(timeout=10)
    snapshot = snapshots.latest or {"backend": backend, "results": {}, "errors": {}, "info": {}}
    if run_error:
        snapshot["run_error"] = run_error
    return snapshot


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


def our_python() -> Path:
    venv = REPO / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def collect(only: str | None, quick: bool, timeout_s: float, ray_version: str) -> dict[str, Any]:
    """Run the chosen backends one after the other (never together: they share two cores)."""
    log_dir = Path(tempfile.mkdtemp(prefix="rayctl-bench-"))
    meta: dict[str, Any] = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": platform.platform(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "quick": quick, "log_dir": str(log_dir),
    }
    runs: dict[str, dict[str, Any] | None] = dict.fromkeys(BACKENDS)
    if only in (None, "ray"):
        ray_env = ensure_ray_env(ray_version)
        meta["ray_version"], meta["ray_version_note"] = ray_env.ray_version, ray_env.note
        # Ray reports usage to its servers unless told not to; no traffic leaves this machine.
        runs["ray"] = run_workload("ray", ray_env.python, quick, timeout_s, log_dir,
                                   {"RAY_USAGE_STATS_ENABLED": "0"})
    if only in (None, "rayctl"):
        runs["rayctl"] = run_workload("rayctl", our_python(), quick, timeout_s, log_dir, {})
    return {"meta": meta, "runs": runs}


def title(meta: dict[str, Any]) -> str:
    ray = f"Ray {meta['ray_version']}" if meta.get("ray_version") else "Ray not run"
    mode = ", --quick" if meta["quick"] else ""
    return f"Core benchmark: rayctl vs {ray} ({meta['cpus']} cores, num_cpus=2{mode}, {meta['date']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=BACKENDS, help="run one side only")
    parser.add_argument("--quick", action="store_true", help="smaller counts, shorter lines")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write all figures here")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per backend")
    parser.add_argument("--ray-version", default=RAY_VERSION)
    args = parser.parse_args(argv)
    report = collect(args.only, args.quick, args.timeout, args.ray_version)
    meta, runs = report["meta"], report["runs"]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    out = Console(width=max(Console().width, 120))  # the table stays readable when piped
    if meta.get("ray_version_note"):
        out.print(meta["ray_version_note"])
    if args.markdown:
        print(f"{title(meta)}\n\n{markdown_table(runs)}")
    else:
        out.print(rich_table(runs, title(meta)))
    print_failures(err, runs)
    ran = [snapshot for snapshot in runs.values() if snapshot is not None]
    return 1 if any(s.get("run_error") or s.get("errors") for s in ran) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Autoscaler benchmark (issue 4: a, c, d), rayctl side by side with Ray's autoscaler:
`python bench/autoscaler.py [--only ray|rayctl] [--rounds 3] [--idle-s 6] [--markdown]`.

Ours: `rayctl start --head --autoscaling-config` with the local provider (real worker processes).
Ray: `ray start --head --autoscaling-config` with its fake multi-node provider (RAY_FAKE_CLUSTER=1,
also real raylets on this machine). Both: head with 0 CPUs, one worker type {CPU: 1}, max 1.
The planner line (b) is bench/planner.py (`--ray` for Ray's side).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from core_report import Line
from ray_env import RAY_VERSION, ensure_ray_env
from side_by_side import BACKENDS, our_python, print_report, run_workload

BENCH_DIR = Path(__file__).resolve().parent
WORKLOAD = BENCH_DIR / "autoscaler_workload.py"

LINES = (
    Line("submit_to_done_s", "(a) task needing a new node: submit until done", "s", False),
    Line("task_wakeup_ms", "(d) task submitted -> autoscaler's launch decision", "ms", False),
    Line("request_wakeup_ms", "(d) request_resources -> autoscaler's launch decision", "ms", False),
    Line("scale_down_after_timeout_s", "(c) idle node gone, time past the idle timeout", "s",
         False),
)
TARGETS = {"submit_to_done_s": 1.5, "task_wakeup_ms": 200.0, "request_wakeup_ms": 200.0,
           "scale_down_after_timeout_s": 1.0}


def collect(only: str | None, rounds: int, idle_s: float, timeout_s: float,
            ray_version: str) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="rayctl-bench-autoscaler-"))
    meta: dict[str, Any] = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                            "rounds": rounds, "idle_s": idle_s, "log_dir": str(log_dir)}
    runs: dict[str, dict[str, Any] | None] = dict.fromkeys(BACKENDS)
    args = ["--rounds", str(rounds), "--idle-s", str(idle_s)]
    if only in (None, "ray"):
        env = ensure_ray_env(ray_version)
        meta["ray_version"] = env.ray_version
        runs["ray"] = run_workload(WORKLOAD, "ray", env.python, args, timeout_s,
                                   log_dir / "autoscaler-ray.log", {"RAY_USAGE_STATS_ENABLED": "0"})
    if only in (None, "rayctl"):
        runs["rayctl"] = run_workload(WORKLOAD, "rayctl", our_python(), args, timeout_s,
                                      log_dir / "autoscaler-rayctl.log", {})
    return {"meta": meta, "runs": runs}


def target_notes(runs: dict[str, dict[str, Any] | None]) -> list[str]:
    ours = (runs.get("rayctl") or {}).get("results", {})
    notes = []
    for line in LINES:
        value = ours.get(line.key)
        if value is not None:
            verdict = "met" if value < TARGETS[line.key] else "MISSED"
            notes.append(f"target {line.key} < {TARGETS[line.key]:g} {line.unit}: {verdict} "
                         f"({value:.2f})")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=BACKENDS)
    parser.add_argument("--rounds", type=int, default=3, help="scale-up/scale-down cycles per side")
    parser.add_argument("--idle-s", type=float, default=6.0, help="the worker type's idle timeout")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, metavar="OUT")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per backend")
    parser.add_argument("--ray-version", default=RAY_VERSION)
    args = parser.parse_args(argv)
    report = collect(args.only, args.rounds, args.idle_s, args.timeout, args.ray_version)
    meta, runs = report["meta"], report["runs"]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    ray = f"Ray {meta['ray_version']}" if meta.get("ray_version") else "Ray not run"
    title = (f"Autoscaler benchmark: rayctl vs {ray} (head 0 CPUs, worker {{CPU: 1}} max 1, "
             f"idle timeout {args.idle_s:g} s, median of {args.rounds} rounds, {meta['date']})")
    return print_report(LINES, report, title, args.markdown, target_notes(runs))


if __name__ == "__main__":
    sys.exit(main())

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
import sys
import tempfile
from pathlib import Path
from typing import Any

from core_report import BACKENDS, LINES, markdown_table, print_failures, rich_table
from ray_env import RAY_VERSION, ensure_ray_env
from rich.console import Console
from side_by_side import err, our_python, run_workload

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORKLOAD = BENCH_DIR / "core_workload.py"
UNITS = {line.key: line.unit for line in LINES}


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
        runs["ray"] = _run("ray", ray_env.python, quick, timeout_s, log_dir,
                           {"RAY_USAGE_STATS_ENABLED": "0"})
    if only in (None, "rayctl"):
        runs["rayctl"] = _run("rayctl", our_python(), quick, timeout_s, log_dir, {})
    return {"meta": meta, "runs": runs}


def _run(backend: str, python: Path, quick: bool, timeout_s: float, log_dir: Path,
         extra_env: dict[str, str]) -> dict[str, Any]:
    return run_workload(WORKLOAD, backend, python, ["--quick"] if quick else [], timeout_s,
                        log_dir / f"core-{backend}.log", extra_env, UNITS)


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
        print(f"{title(meta)}\n\n{markdown_table(LINES, runs)}")
    else:
        out.print(rich_table(LINES, runs, title(meta)))
    print_failures(err, runs)
    ran = [snapshot for snapshot in runs.values() if snapshot is not None]
    return 1 if any(s.get("run_error") or s.get("errors") for s in ran) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Multi-node benchmark (issue 3), rayctl side by side with Ray, 3 nodes on this machine:
`python bench/multinode.py [--quick] [--only ray|rayctl] [--tls] [--markdown] [--json OUT]`.

Runs bench/multinode_workload.py once with Ray's venv and once with ours, one after the other,
each in its own subprocess with its own cluster; prints both figures and the ratio per line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from core_report import Line
from ray_env import RAY_VERSION, ensure_ray_env
from ray_tls import ray_tls_env
from side_by_side import BACKENDS, our_python, print_report, run_workload

BENCH_DIR = Path(__file__).resolve().parent
WORKLOAD = BENCH_DIR / "multinode_workload.py"

LINES = (
    Line("transfer_100mb_gb_s", "cross-node transfer of a 100 MB numpy object", "GB/s", True),
    Line("transfer_1gb_gb_s", "cross-node transfer of a 1 GB numpy object", "GB/s", True),
    Line("pg_per_s", "placement group create + ready + remove (1 bundle, PACK)", "groups/s", True),
    Line("tasks_10k_per_s", "10k no-op tasks across 3 nodes (submitted at once, one get)",
         "tasks/s", True),
    Line("start_s", "3-node cluster start until all nodes are alive", "s", False),
)


def collect(only: str | None, quick: bool, timeout_s: float, ray_version: str,
            store_gb: float, tls: bool = False) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix="rayctl-bench-multinode-"))
    meta: dict[str, Any] = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                            "quick": quick, "tls": tls, "log_dir": str(log_dir)}
    runs: dict[str, dict[str, Any] | None] = dict.fromkeys(BACKENDS)
    args = [*(["--quick"] if quick else []), *(["--tls"] if tls else []),
            "--object-store-gb", str(store_gb)]
    if only in (None, "ray"):
        env = ensure_ray_env(ray_version)
        meta["ray_version"] = env.ray_version
        ray_tmp = tempfile.mkdtemp(prefix="rayctl-bench-raytmp-")  # Ray's sessions go here
        try:
            ray_env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_tmp}
            if tls:
                ray_env.update(ray_tls_env(Path(ray_tmp)))
            runs["ray"] = run_workload(WORKLOAD, "ray", env.python, args, timeout_s,
                                       log_dir / "multinode-ray.log", ray_env)
        finally:
            shutil.rmtree(ray_tmp, ignore_errors=True)
    if only in (None, "rayctl"):
        runs["rayctl"] = run_workload(WORKLOAD, "rayctl", our_python(), args, timeout_s,
                                      log_dir / "multinode-rayctl.log", {})
    return {"meta": meta, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=BACKENDS)
    parser.add_argument("--quick", action="store_true", help="no 1 GB line, fewer repeats")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, metavar="OUT")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per backend")
    parser.add_argument("--object-store-gb", type=float, default=3.0, help="per node, both sides")
    parser.add_argument("--ray-version", default=RAY_VERSION)
    parser.add_argument("--tls", action="store_true",
                        help="both sides with TLS on every channel (Ray: RAY_USE_TLS)")
    args = parser.parse_args(argv)
    report = collect(args.only, args.quick, args.timeout, args.ray_version, args.object_store_gb,
                     args.tls)
    meta = report["meta"]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    ray = f"Ray {meta['ray_version']}" if meta.get("ray_version") else "Ray not run"
    title = (f"Multi-node benchmark: rayctl vs {ray} (3 nodes on one machine: head 1 CPU + 2 × "
             f"2 CPUs, {args.object_store_gb:g} GB object store each{', --quick' if args.quick else ''}"
             f"{', TLS on every channel' if args.tls else ''}, "
             f"{meta['date']})")
    return print_report(LINES, report, title, args.markdown, ())


if __name__ == "__main__":
    sys.exit(main())

"""One side of `bench/scale.py --tasks N`: N no-op tasks that return their index, submitted at
once, then one `get` of all; prints JSON: tasks, seconds, tasks/s and the driver's peak RSS.

    python bench/scale_tasks_workload.py --backend rayctl|ray --tasks N
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["rayctl", "ray"], required=True)
    parser.add_argument("--tasks", type=int, required=True)
    args = parser.parse_args()
    if args.backend == "rayctl":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    rt = importlib.import_module("runtime" if args.backend == "rayctl" else "ray")
    rt.init(num_cpus=2, include_dashboard=False) if args.backend == "ray" else rt.init(num_cpus=2)

    @rt.remote
    def index(i: int) -> int:
        return i

    rt.get([index.remote(i) for i in range(100)])  # workers up
    before = peak_rss_mib()
    start = time.perf_counter()
    refs = [index.remote(i) for i in range(args.tasks)]
    values = rt.get(refs)
    seconds = time.perf_counter() - start
    if values != list(range(args.tasks)):
        raise AssertionError("wrong results")
    print(json.dumps({"backend": args.backend, "tasks": args.tasks, "seconds": seconds,
                      "tasks_per_s": args.tasks / seconds, "peak_rss_mib": peak_rss_mib(),
                      "rss_before_mib": before}), flush=True)
    rt.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

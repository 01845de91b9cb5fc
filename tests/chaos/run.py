"""The full chaos set (scripts/chaos.sh): every scenario in turn, one line each as it ends, then
the table; `--markdown PATH` writes it for docs/RELIABILITY.md. Exits 1 if any scenario fails."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

sys.path[:0] = [os.path.dirname(__file__), os.path.dirname(os.path.dirname(__file__))]

import launcher_scenarios as up  # noqa: E402
import runtime_scenarios as rs  # noqa: E402
from harness import ScenarioResult, markdown_table, text_table  # noqa: E402

SCENARIOS: list[tuple[str, Callable[[str], ScenarioResult]]] = [
    ("worker", lambda root: rs.worker_killed(root, tasks=2000, task_s=0.01)),
    ("raylet", rs.raylet_killed),
    ("gcs", rs.gcs_killed),
    ("redis", rs.redis_killed),
    ("driver", lambda root: rs.driver_killed(root, objects=10, object_mb=100)),
    ("monitor-demand", lambda root: up.monitor_killed(root, at_slot=False)),
    ("monitor-slot", lambda root: up.monitor_killed(root, at_slot=True)),
    ("down-0.2", lambda root: up.down_interrupted(root, 0.2)),
    ("down-1", lambda root: up.down_interrupted(root, 1.0)),
    ("down-2.5", lambda root: up.down_interrupted(root, 2.5)),
    ("down-kill-1", lambda root: up.down_interrupted(root, 1.0, signal.SIGKILL)),
]


def run_one(name: str, scenario: Callable[[str], ScenarioResult]) -> ScenarioResult:
    root = tempfile.mkdtemp(prefix="rayctl-chaos-")
    try:
        return scenario(root)
    except Exception as exc:  # noqa: BLE001 - a scenario that breaks is a failed row, not a stop
        return ScenarioResult(
            name, 1, 0, 0, 0, None, note=f"error: {type(exc).__name__}: {exc}"[:300]
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--markdown", help="also write the table as markdown to this path")
    parser.add_argument("--only", nargs="*", help="scenario names to run (default: all)")
    args = parser.parse_args()
    started = time.monotonic()
    results = []
    for name, scenario in SCENARIOS:
        if args.only and name not in args.only:
            continue
        results.append(run_one(name, scenario))
        print(results[-1].line(), flush=True)
    elapsed = time.monotonic() - started
    print("\n" + text_table(results) + f"\n\n{len(results)} scenarios in {elapsed:.0f} s")
    if args.markdown:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        with open(args.markdown, "w") as f:
            f.write(
                f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, "
                f"{elapsed:.0f} s on {os.cpu_count()} cores.\n\n{markdown_table(results)}\n"
            )
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

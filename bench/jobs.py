"""The Jobs API side by side: Ray 2.60's own JobSubmissionClient (in Ray's venv) against our
head's web service and against Ray's job server, one after the other on this machine, each head
with 2 CPUs. First it checks every call a Ray user makes against ours (submit with a working_dir
upload, tail, info, logs, stop, list, delete), then times submit -> RUNNING (median of 20) and a
burst of 100 jobs (until all ended). Prints both figures and the ratio per line.

  .venv/bin/python bench/jobs.py [--markdown] [--burst N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ray_env import ensure_ray_env  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CLIENT = Path(__file__).resolve().parent / "jobs_client.py"
LINES = (  # (key, label, unit, lower is better)
    ("submit_to_running_ms_p50", "submit -> RUNNING, median", "ms", True),
    ("submit_to_succeeded_ms_p50", "submit -> SUCCEEDED (echo), median", "ms", True),
    ("burst_submit_s", "burst: all submitted", "s", True),
    ("burst_all_done_s", "burst: all ended", "s", True),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(python: Path, url: str, token: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([str(python), str(CLIENT), url, token], capture_output=True, text=True,
                          timeout=1800, env={**os.environ, **env})
    if done.returncode != 0:
        raise RuntimeError(f"the client failed against {url}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_ours(python: Path, env: dict[str, str]) -> dict[str, Any]:
    temp = tempfile.mkdtemp(prefix="bench-jobs-")
    cli_env = {**os.environ, "RAYCTL_TEMP_DIR": temp, "PYTHONPATH": str(REPO)}
    rayctl = [sys.executable, "-m", "autoscaler.cli"]
    try:
        subprocess.run([*rayctl, "start", "--head", "--num-cpus", "2", "--dashboard-port",
                        str(_free_port())], check=True, env=cli_env, capture_output=True,
                       timeout=120)
        address = json.loads(Path(temp, "cluster_address.json").read_text())
        web = Path(address["session_dir"], "web.json")
        deadline = time.monotonic() + 60
        while not web.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        url = json.loads(web.read_text())["url"]
        token = Path(address["token_file"]).read_text().splitlines()[0]
        return _client(python, url, token, env)
    finally:
        subprocess.run([*rayctl, "stop"], env=cli_env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def run_ray(python: Path, env: dict[str, str]) -> dict[str, Any]:
    ray = str(python.parent / "ray")
    port = _free_port()
    # Ray 2.60 runs token authentication too (RAY_AUTH_MODE=token; the token in
    # ~/.ray/auth_token, made by `ray start` when missing): both sides get a Bearer header.
    ray_env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", **env}
    try:
        subprocess.run([ray, "start", "--head", "--num-cpus", "2", "--include-dashboard", "true",
                        "--dashboard-port", str(port), "--disable-usage-stats"], check=True,
                       env=ray_env, capture_output=True, timeout=300)
        token = (Path.home() / ".ray" / "auth_token").read_text().strip()
        return _client(python, f"http://127.0.0.1:{port}", token, env)
    finally:
        subprocess.run([ray, "stop", "--force"], env=ray_env, capture_output=True, timeout=300)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--burst", type=int, default=100)
    p.add_argument("--latency-jobs", type=int, default=20)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    env = {"JOBS_BURST_N": str(args.burst), "JOBS_LATENCY_N": str(args.latency_jobs)}
    ray = ensure_ray_env()
    ours = run_ours(ray.python, env)
    print(json.dumps({"rayctl": ours}), flush=True)
    print(f"Ray {ray.ray_version}'s JobSubmissionClient against rayctl: "
          f"{', '.join(ours['calls'])}: all worked", flush=True)
    theirs = run_ray(ray.python, env)
    print(json.dumps({"ray": theirs}), flush=True)
    rows = []
    for key, label, unit, _lower in LINES:
        a, b = ours[key], theirs[key]
        rows.append((label, f"{a:.1f} {unit}", f"{b:.1f} {unit}", f"{b / a:.1f}x" if a else "-"))
    if args.markdown:
        print("| line | rayctl | Ray | Ray / rayctl |\n| --- | --- | --- | --- |")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for label, a, b, ratio in rows:
            print(f"{label:40s} rayctl {a:>12s}   Ray {b:>12s}   Ray/rayctl {ratio}")
    print(f"burst of {args.burst}: not succeeded: rayctl {ours['burst_not_succeeded']}, "
          f"Ray {theirs['burst_not_succeeded']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run one workload script per backend (Ray's venv, then ours; never both at once) and render the
two result snapshots as one table of lines: the shared plumbing of bench/multinode.py and
bench/autoscaler.py. Rendering follows bench/core_report.py (ratio = × better for rayctl)."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core import Snapshots, _wait, kill_tree
from core_report import Line, format_value, times_better
from rich.table import Table
from rich.text import Text

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
BACKENDS = ("ray", "rayctl")


def run_workload(script: Path, backend: str, python: Path, args: Sequence[str], timeout_s: float,
                 log_path: Path, extra_env: Mapping[str, str]) -> dict[str, Any]:
    """Run `script --backend B ARGS`; its last JSON stdout line is the snapshot returned."""
    env = {**os.environ, **extra_env, "PYTHONPATH": f"{REPO}:{BENCH_DIR}"}
    cmd = [str(python), str(script), "--backend", backend, *args]
    print(f"bench: {backend}: {' '.join(cmd)}  (log: {log_path})", flush=True)
    snapshots = Snapshots(backend)
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


def _cell(line: Line, snapshot: Mapping[str, Any] | None) -> tuple[float | None, str]:
    if snapshot is None:
        return None, "—"
    value = snapshot.get("results", {}).get(line.key)
    if value is not None:
        return float(value), format_value(line, float(value))
    return None, "error" if line.key in snapshot.get("errors", {}) else "—"


def rows(lines: Sequence[Line], runs: Mapping[str, Mapping[str, Any] | None]
         ) -> list[tuple[Line, str, str, float | None]]:
    out = []
    for line in lines:
        ray_value, ray_text = _cell(line, runs.get("ray"))
        ours_value, ours_text = _cell(line, runs.get("rayctl"))
        out.append((line, ray_text, ours_text, times_better(line, ours_value, ray_value)))
    return out


def rich_table(lines: Sequence[Line], runs: Mapping[str, Mapping[str, Any] | None],
               title: str) -> Table:
    table = Table(title=title, caption="ratio = how many times better rayctl is (>1: rayctl wins)")
    for name, justify in (("benchmark", "left"), ("unit", "left"), ("better", "left"),
                          ("Ray", "right"), ("rayctl", "right"), ("rayctl vs Ray", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for line, ray_text, ours_text, ratio in rows(lines, runs):
        ratio_text = Text("—") if ratio is None else Text(
            f"{ratio:.2f}×", style="green" if ratio >= 1 else "red")
        table.add_row(line.name, line.unit, "higher" if line.higher_is_better else "lower",
                      ray_text, ours_text, ratio_text)
    return table


def markdown_table(lines: Sequence[Line], runs: Mapping[str, Mapping[str, Any] | None]) -> str:
    out = ["| benchmark | unit | better | Ray | rayctl | rayctl vs Ray (× better) |",
           "| --- | --- | --- | ---: | ---: | ---: |"]
    for line, ray_text, ours_text, ratio in rows(lines, runs):
        better = "higher" if line.higher_is_better else "lower"
        ratio_text = "—" if ratio is None else f"{ratio:.2f}×"
        out.append(f"| {line.name} | {line.unit} | {better} | {ray_text} | {ours_text} | {ratio_text} |")
    return "\n".join(out)


def failures(runs: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    notes = []
    for backend in BACKENDS:
        snapshot = runs.get(backend)
        if snapshot is None:
            continue
        if snapshot.get("run_error"):
            notes.append(f"{backend}: {snapshot['run_error']}")
        notes += [f"{backend} {key}: {error}" for key, error in snapshot.get("errors", {}).items()]
    return notes

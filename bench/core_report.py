"""The lines of the core benchmark table, and how every side-by-side table renders (rich table
or Markdown; bench/multinode.py and bench/autoscaler.py pass their own lines).

The ratio column always reads "how many times better rayctl is than Ray": ours/Ray on a
higher-is-better line, Ray/ours on a lower-is-better line. Above 1 rayctl wins, below 1 Ray does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

BACKENDS = ("ray", "rayctl")


@dataclass(frozen=True, slots=True)
class Line:
    key: str  # the workload's result key
    name: str  # named the way `ray microbenchmark` names its lines
    unit: str
    higher_is_better: bool
    integer: bool = False


LINES = (
    Line("tasks_sync_per_s", "single client tasks sync", "tasks/s", True),
    Line("tasks_async_per_s", "single client tasks async (10k submitted, one get)", "tasks/s", True),
    Line("task_rtt_median_ms", "single client task round trip, median", "ms", False),
    Line("actor_sync_per_s", "1:1 actor calls sync", "calls/s", True),
    Line("actor_async_per_s", "1:1 actor calls async", "calls/s", True),
    Line("put_small_per_s", "single client put calls (small objects)", "calls/s", True),
    Line("get_small_per_s", "single client get calls (small objects)", "calls/s", True),
    Line("put_100mb_gb_s", "single client put of a 100 MB numpy array", "GB/s", True),
    Line("get_100mb_gb_s", "single client get of a 100 MB numpy array (zero-copy)", "GB/s", True),
    Line("init_s", "init() until the first task's result is back", "s", False),
    Line("shutdown_s", "shutdown()", "s", False),
    Line("idle_pss_mib", "idle cluster memory (PSS of every cluster process)", "MiB", False),
    Line("idle_processes", "idle cluster processes", "processes", False, integer=True),
)


def times_better(line: Line, ours: float | None, ray: float | None) -> float | None:
    """How many times better rayctl is on this line (>1: rayctl wins); None when unknown."""
    if ours is None or ray is None or ours <= 0 or ray <= 0:
        return None
    return ours / ray if line.higher_is_better else ray / ours


def format_value(line: Line, value: float) -> str:
    if line.integer:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _cell(line: Line, snapshot: Mapping[str, Any] | None) -> tuple[float | None, str]:
    """A backend's figure for a line and its text ('—' not run, 'error'/'timeout' failed)."""
    if snapshot is None:
        return None, "—"
    value = snapshot.get("results", {}).get(line.key)
    if value is not None:
        return float(value), format_value(line, float(value))
    error = snapshot.get("errors", {}).get(line.key)
    if error is None:
        return None, "—"
    return None, "timeout" if error.startswith("LineTimeout") else "error"


def rows(lines: Sequence[Line], runs: Mapping[str, Mapping[str, Any] | None]
         ) -> list[tuple[Line, str, str, float | None]]:
    """One (line, ray text, rayctl text, times better) per table line."""
    out = []
    for line in lines:
        ray_value, ray_text = _cell(line, runs.get("ray"))
        ours_value, ours_text = _cell(line, runs.get("rayctl"))
        out.append((line, ray_text, ours_text, times_better(line, ours_value, ray_value)))
    return out


def _direction(line: Line) -> str:
    return "higher" if line.higher_is_better else "lower"


def rich_table(lines: Sequence[Line], runs: Mapping[str, Mapping[str, Any] | None],
               title: str) -> Table:
    table = Table(title=title, caption="ratio = how many times better rayctl is (>1: rayctl wins)")
    table.add_column("benchmark")
    table.add_column("unit", style="dim")
    table.add_column("better", style="dim")
    table.add_column("Ray", justify="right")
    table.add_column("rayctl", justify="right")
    table.add_column("rayctl vs Ray", justify="right")
    for line, ray_text, ours_text, ratio in rows(lines, runs):
        ratio_text = Text("—") if ratio is None else Text(
            f"{ratio:.2f}×", style="green" if ratio >= 1 else "red")
        table.add_row(line.name, line.unit, _direction(line), ray_text, ours_text, ratio_text)
    return table


def markdown_table(lines: Sequence[Line], runs: Mapping[str, Mapping[str, Any] | None]) -> str:
    header = [
        "| benchmark | unit | better | Ray | rayctl | rayctl vs Ray (× better) |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    body = [
        f"| {line.name} | {line.unit} | {_direction(line)} | {ray_text} | {ours_text} | "
        f"{'—' if ratio is None else f'{ratio:.2f}×'} |"
        for line, ray_text, ours_text, ratio in rows(lines, runs)
    ]
    return "\n".join(header + body)


def failures(runs: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    """One text per failed line or run, to print under the table."""
    notes = []
    for backend in BACKENDS:
        snapshot = runs.get(backend)
        if snapshot is None:
            continue
        if snapshot.get("run_error"):
            notes.append(f"{backend}: {snapshot['run_error']}")
        for key, error in snapshot.get("errors", {}).items():
            notes.append(f"{backend} {key}: {error}")
    return notes


def print_failures(console: Console, runs: Mapping[str, Mapping[str, Any] | None]) -> None:
    for note in failures(runs):
        console.print(Text(note, style="red"))

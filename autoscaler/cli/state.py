"""`rayctl list KIND` and `rayctl summary tasks|actors`: the cluster's state (Ray's `ray list` /
`ray summary`), read from the head's web service."""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated, Any

import typer

from autoscaler.cli.app import app
from autoscaler.cli.job import AddressOpt, ConfigOpt, _run

# the columns `rayctl list` shows by default (--json shows every field)
COLUMNS = {
    "nodes": ("node_id", "state", "node_ip", "is_head_node", "node_type", "resources_total"),
    "actors": ("actor_id", "class_name", "state", "name", "node_id", "pid", "num_restarts"),
    "placement-groups": ("placement_group_id", "name", "state", "strategy", "bundles"),
    "jobs": ("job_id", "type", "status", "driver_pid", "namespace"),
    "tasks": ("task_id", "attempt_number", "name", "state", "type", "node_id", "error_type"),
    "objects": ("object_id", "object_size", "node_ip", "copy", "in_memory", "spilled"),
}
DEFAULT_LIMIT = 100


@app.command("list")
def list_state(
    kind: Annotated[str, typer.Argument(
        help="nodes, actors, placement-groups, jobs, tasks or objects")],
    filters: Annotated[list[str] | None, typer.Option(
        "--filter", "-f", help="key=value or key!=value (repeatable), e.g. state=ALIVE")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="rows to show at most")] = DEFAULT_LIMIT,
    as_json: Annotated[bool, typer.Option("--json", help="every field, as JSON")] = False,
    address: AddressOpt = None,
    cluster_config: ConfigOpt = None,
) -> None:
    """List the cluster's nodes, actors, placement groups, jobs, tasks or objects (as `ray list`).
    Tasks are the latest attempt of each, newest first, as their owners reported them (up to a
    second late); objects are the copies in the live nodes' stores."""
    from autoscaler.cli.tables import print_rows

    rows = _list(kind, filters or [], address, cluster_config, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        columns = COLUMNS[kind]
        print_rows([{c: row.get(c) for c in columns} for row in rows],
                   empty=f"No {kind.replace('-', ' ')}" + (" match the filters." if filters else "."))
    if more:
        typer.echo(f"(the first {limit} shown; --limit N to see more)", err=True)


def _list(kind: str, filters: list[str], address: str | None,
          config: str | None, limit: int = 0) -> list[dict[str, Any]]:
    from urllib.parse import urlencode

    if kind not in COLUMNS:
        typer.echo(f"error: unknown kind {kind!r}; list one of {', '.join(COLUMNS)}", err=True)
        raise typer.Exit(2)
    params = [("filter", f) for f in filters] + ([("limit", str(limit))] if limit else [])
    query = ("?" + urlencode(params)) if params else ""
    rows: list[dict[str, Any]] = _run(address, config,
                                      lambda c: c.call("GET", f"/api/state/{kind}{query}"))
    return rows


@app.command("summary")
def summary(
    kind: Annotated[str, typer.Argument(help="tasks or actors")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    address: AddressOpt = None,
    cluster_config: ConfigOpt = None,
) -> None:
    """Counts by function or class, and state (as `ray summary tasks|actors`)."""
    from autoscaler.cli.tables import print_rows

    if kind == "tasks":
        _summarize_tasks(as_json, address, cluster_config)
        return
    if kind != "actors":
        typer.echo(f"error: unknown summary {kind!r}; summarize tasks or actors", err=True)
        raise typer.Exit(2)
    rows = _list("actors", [], address, cluster_config)
    counts = Counter((r["class_name"], r["state"]) for r in rows)
    by_class: dict[str, dict[str, int]] = {}
    for (cls, state), n in sorted(counts.items()):
        by_class.setdefault(cls, {})[state] = n
    if as_json:
        typer.echo(json.dumps(by_class, indent=2))
        return
    print_rows([{"class_name": cls, **{"total": sum(states.values())}, "states": states}
                for cls, states in by_class.items()], empty="No actors.")


def _summarize_tasks(as_json: bool, address: str | None, config: str | None) -> None:
    from autoscaler.cli.tables import print_rows

    summary: dict[str, Any] = _run(address, config, lambda c: c.call("GET", "/api/summary/tasks"))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"{summary['total']} tasks: " + (", ".join(
        f"{n} {state}" for state, n in summary["by_state"].items()) or "none yet"))
    print_rows([{"func_or_class_name": name, "type": group["type"],
                 "state_counts": group["state_counts"], "retries": group["retries"]}
                for name, group in summary["summary"].items()], empty="No tasks.")
    if summary["dropped"]:
        from runtime.gcs.task_events import MAX_TASKS
        from runtime.task_events import MAX_BUFFERED

        typer.echo(f"({summary['dropped']} tasks were not kept: the GCS keeps the latest "
                   f"{MAX_TASKS:,}, and an owner keeps at most {MAX_BUFFERED:,} changes a "
                   "second)", err=True)

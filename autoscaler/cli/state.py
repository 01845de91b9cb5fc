"""`rayctl list KIND` and `rayctl summary actors`: the cluster's state (Ray's `ray list` /
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
}
NOT_RECORDED = ("tasks", "objects")


@app.command("list")
def list_state(
    kind: Annotated[str, typer.Argument(help="nodes, actors, placement-groups or jobs")],
    filters: Annotated[list[str] | None, typer.Option(
        "--filter", "-f", help="key=value or key!=value (repeatable), e.g. state=ALIVE")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="every field, as JSON")] = False,
    address: AddressOpt = None,
    cluster_config: ConfigOpt = None,
) -> None:
    """List the cluster's nodes, actors, placement groups or jobs (as `ray list`)."""
    from autoscaler.cli.tables import print_rows

    rows = _list(kind, filters or [], address, cluster_config)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    columns = COLUMNS[kind]
    print_rows([{c: row.get(c) for c in columns} for row in rows],
               empty=f"No {kind.replace('-', ' ')}" + (" match the filters." if filters else "."))


def _list(kind: str, filters: list[str], address: str | None,
          config: str | None) -> list[dict[str, Any]]:
    from urllib.parse import urlencode

    if kind in NOT_RECORDED:
        typer.echo(f"error: rayctl does not record {kind} for listing yet; list one of "
                   f"{', '.join(COLUMNS)}", err=True)
        raise typer.Exit(2)
    if kind not in COLUMNS:
        typer.echo(f"error: unknown kind {kind!r}; list one of {', '.join(COLUMNS)}", err=True)
        raise typer.Exit(2)
    query = ("?" + urlencode([("filter", f) for f in filters])) if filters else ""
    rows: list[dict[str, Any]] = _run(address, config,
                                      lambda c: c.call("GET", f"/api/state/{kind}{query}"))
    return rows


@app.command("summary")
def summary(
    kind: Annotated[str, typer.Argument(help="actors")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    address: AddressOpt = None,
    cluster_config: ConfigOpt = None,
) -> None:
    """Counts by class and state (as `ray summary actors`)."""
    from autoscaler.cli.tables import print_rows

    if kind != "actors":
        typer.echo(f"error: rayctl summarizes actors only for now (not {kind!r})", err=True)
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

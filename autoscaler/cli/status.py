"""`rayctl status`: nodes, resources, demand and the autoscaler's decisions, from the GCS of a
cluster on this machine (or --address), or, given a cluster config, from that cluster's head."""

from __future__ import annotations

from typing import Annotated

import typer

from autoscaler.cli.app import app
from autoscaler.cli.errors import cli_errors


@app.command()
def status(
    config: Annotated[
        str | None,
        typer.Argument(help="cluster config: ask that cluster's head (as `rayctl up` made it)"),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="GCS HOST:PORT (default: this machine's cluster)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="per-instance history")] = False,
) -> None:
    """Nodes, resources, pending demand and the autoscaler's recent decisions."""
    from autoscaler.sdk import get_status
    from autoscaler.status import render

    if config and address is None:
        _status_on_head(config, as_json=as_json, verbose=verbose)
        return
    try:
        current = get_status(address=address)
    except (ConnectionError, LookupError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(current.to_json(indent=2))
    else:
        typer.echo(render(current, verbose=verbose))


def _status_on_head(config_path: str, *, as_json: bool, verbose: bool) -> None:
    """`rayctl status CONFIG`: run `rayctl status` on that cluster's head and relay it."""
    from autoscaler.launcher.remote import status_on_head
    from autoscaler.launcher.up import load_cluster

    with cli_errors():
        result = status_on_head(load_cluster(config_path), as_json=as_json, verbose=verbose)
    typer.echo(result.output, nl=False)
    raise typer.Exit(result.exit_code)

"""`rayctl up` and `rayctl down`: the cluster launcher's lifecycle commands (autoscaler/launcher/)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from autoscaler.cli.app import app
from autoscaler.cli.errors import (
    ClusterNameOpt,
    OptionalConfigArg,
    YesOpt,
    cli_errors,
    cluster_config,
    confirm,
    run_reported,
)

if TYPE_CHECKING:
    from autoscaler.launcher.down import DownResult


@app.command("up")
def up_command(
    config: OptionalConfigArg = None,
    yes: YesOpt = False,
    no_restart: Annotated[bool, typer.Option(help="set up but do not (re)start services")] = False,
    restart_only: Annotated[bool, typer.Option(help="skip setup, restart services")] = False,
    min_workers: Annotated[
        int | None, typer.Option(min=0, help="override min_workers of the worker type")
    ] = None,
    max_workers: Annotated[int | None, typer.Option(min=0, help="override max_workers")] = None,
    cluster_name: ClusterNameOpt = None,
    no_config_cache: Annotated[
        bool, typer.Option(help="resolve the provider config afresh")
    ] = False,
) -> None:
    """Create or update a cluster: launch the head, set it up, start its services."""
    from autoscaler.launcher.head import is_local
    from autoscaler.launcher.progress import ConsoleProgress
    from autoscaler.launcher.up import UpOptions, connect_help, up

    if no_restart and restart_only:
        typer.echo("error: give --no-restart or --restart-only, not both", err=True)
        raise typer.Exit(2)
    progress = ConsoleProgress()
    with cli_errors():
        with progress.step(f"Validating {config or 'the packaged local config'}"):
            cluster = cluster_config(config, cluster_name, min_workers=min_workers,
                                     max_workers=max_workers)
        for warning in cluster.warnings:
            progress.note(f"warning: {warning}")
        options = UpOptions(yes=yes, restart=not no_restart, restart_only=restart_only,
                            use_config_cache=not no_config_cache)
        result = up(cluster, options, progress, confirm)
    if not result.changed:
        typer.echo(f"Cluster {result.cluster_name!r} is up to date: nothing changed.")
    typer.echo(f"Done in {progress.total_s():.1f} s.")
    for line in connect_help(result, config or "", local=is_local(cluster)):
        typer.echo(line)


@app.command("down")
def down_command(
    config: OptionalConfigArg = None,
    yes: YesOpt = False,
    workers_only: Annotated[bool, typer.Option(help="keep the head, remove workers")] = False,
    keep_min_workers: Annotated[
        bool, typer.Option(help="keep min_workers of each type")
    ] = False,
    purge: Annotated[
        bool,
        typer.Option(help="then delete what bootstrap created (security group, key pair, "
                          "IAM role)"),
    ] = False,
    cluster_name: ClusterNameOpt = None,
) -> None:
    """Tear a cluster down: stop services, terminate every instance (head last)."""
    from autoscaler.config import open_provider
    from autoscaler.launcher.down import DownOptions, down
    from autoscaler.launcher.progress import ConsoleProgress

    if purge and (workers_only or keep_min_workers):
        typer.echo("error: --purge removes the whole cluster: not with --workers-only or "
                   "--keep-min-workers", err=True)
        raise typer.Exit(2)
    progress = ConsoleProgress()
    with cli_errors():
        cluster = cluster_config(config, cluster_name)
        options = DownOptions(yes=yes, workers_only=workers_only,
                              keep_min_workers=keep_min_workers)
        result = down(cluster, options, progress, confirm)
    _report_down(result)
    if purge:
        run_reported(lambda: open_provider(cluster).purge())
        typer.echo(f"Cluster {result.cluster_name!r}: purged what bootstrap created.")


def _report_down(result: DownResult) -> None:
    if not result.removed and not result.failed:
        typer.echo(f"Cluster {result.cluster_name!r}: nothing to remove.")
    if result.removed:
        typer.echo(f"Removed {len(result.removed)}: {', '.join(result.removed)}")
    if result.kept:
        typer.echo(f"Kept (--keep-min-workers): {', '.join(result.kept)}")
    for instance_id, why in result.failed:
        typer.echo(f"could not remove {instance_id}: {why}", err=True)
    if result.failed:
        raise typer.Exit(1)

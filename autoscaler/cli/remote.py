"""Commands that reach a running cluster's head: exec, attach, submit, rsync-up, rsync-down,
get-head-ip, monitor (autoscaler/launcher/remote.py does the work)."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from autoscaler.cli.app import app
from autoscaler.cli.errors import (
    ClusterNameOpt,
    ConfigArg,
    cli_errors,
    cluster_config,
    run_reported,
)

if TYPE_CHECKING:
    from autoscaler.launcher.remote import Interactive, PortForward

TmuxOpt = Annotated[bool, typer.Option("--tmux", help="run in a detached tmux session")]
ScreenOpt = Annotated[bool, typer.Option("--screen", help="run in a detached screen session")]


def _multiplexer(tmux: bool, screen: bool) -> str | None:
    if tmux and screen:
        typer.echo("error: give --tmux or --screen, not both", err=True)
        raise typer.Exit(2)
    return "tmux" if tmux else "screen" if screen else None


def _port_forwards(given: list[str]) -> list[PortForward]:
    from autoscaler.launcher.remote import parse_port_forward

    try:
        return [parse_port_forward(text) for text in given]
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _foreground(session: Interactive) -> int:
    """Hand the terminal to the process; Ctrl-C reaches it, not us."""
    try:
        return subprocess.call(session.argv, cwd=session.cwd, env=session.env)
    except KeyboardInterrupt:
        return 130


@app.command("exec")
def exec_command(
    config: ConfigArg,
    command: Annotated[str, typer.Argument(help="shell command to run on the head")],
    start: Annotated[bool, typer.Option(help="`up` the cluster first")] = False,
    stop: Annotated[bool, typer.Option(help="`down` the cluster afterwards")] = False,
    port_forward: Annotated[list[str] | None, typer.Option(help="forward a head port to this machine (SSH): PORT, or LOCAL:REMOTE")] = None,
    tmux: TmuxOpt = False,
    screen: ScreenOpt = False,
    cluster_name: ClusterNameOpt = None,
) -> None:
    """Run a command on the head and print its output; exits with its exit code."""
    from autoscaler.launcher import remote
    from autoscaler.launcher.down import DownOptions, down
    from autoscaler.launcher.progress import ConsoleProgress
    from autoscaler.launcher.up import UpOptions, up
    forwards = _port_forwards(port_forward or [])
    with cli_errors():
        cluster = cluster_config(config, cluster_name)
        multiplexer = _multiplexer(tmux, screen)
        if start:
            up(cluster, UpOptions(yes=True), ConsoleProgress(sys.stderr))
        if forwards:
            code = _foreground(remote.port_forward(cluster, command, forwards))
        else:
            ran = remote.exec_on_head(cluster, command, multiplexer=multiplexer)
            typer.echo(ran.output, nl=False)
            code = ran.exit_code
        if stop:
            down(cluster, DownOptions(yes=True), ConsoleProgress(sys.stderr))
    raise typer.Exit(code)

@app.command("attach")
def attach_command(
    config: ConfigArg, tmux: TmuxOpt = False, screen: ScreenOpt = False,
    cluster_name: ClusterNameOpt = None,
) -> None:
    """An interactive shell on the head (local: in the head's slot, with its environment)."""
    from autoscaler.launcher import remote

    with cli_errors():
        session = remote.attach(cluster_config(config, cluster_name), _multiplexer(tmux, screen))
    raise typer.Exit(_foreground(session))

@app.command("submit")
def submit_command(
    config: ConfigArg,
    script: Annotated[str, typer.Argument(help="Python script to run on the head")],
    args: Annotated[list[str] | None, typer.Argument(help="arguments for the script (after --)")] = None,
    cluster_name: ClusterNameOpt = None,
) -> None:
    """Copy a script to the head and run it there, connected to the cluster."""
    from autoscaler.launcher import remote

    with cli_errors():
        ran = remote.submit(cluster_config(config, cluster_name), script, args or [])
    typer.echo(ran.output, nl=False)
    raise typer.Exit(ran.exit_code)

@app.command("rsync-up")
def rsync_up_command(
    config: ConfigArg,
    source: Annotated[str, typer.Argument(help="local file or directory")],
    target: Annotated[str, typer.Argument(help="path on the head")],
    cluster_name: ClusterNameOpt = None,
) -> None:
    """Copy a local file or directory to the head."""
    from autoscaler.launcher import remote

    run_reported(lambda: remote.rsync_up(cluster_config(config, cluster_name), source, target))
    typer.echo(f"copied {source} -> head:{target}")

@app.command("rsync-down")
def rsync_down_command(
    config: ConfigArg,
    source: Annotated[str, typer.Argument(help="path on the head")],
    target: Annotated[str, typer.Argument(help="local file or directory")],
    cluster_name: ClusterNameOpt = None,
) -> None:
    """Copy a file or directory from the head to this machine."""
    from autoscaler.launcher import remote

    where = run_reported(lambda: remote.rsync_down(cluster_config(config, cluster_name), source, target))
    typer.echo(f"copied head:{source} -> {where}")

@app.command("get-head-ip")
def get_head_ip_command(config: ConfigArg, cluster_name: ClusterNameOpt = None) -> None:
    """Print the head node's IP address."""
    from autoscaler.launcher import remote

    typer.echo(run_reported(lambda: remote.get_head_ip(cluster_config(config, cluster_name))))

@app.command("monitor")
def monitor_command(
    config: ConfigArg,
    lines: Annotated[int, typer.Option(help="lines of history first")] = 100,
    cluster_name: ClusterNameOpt = None,
) -> None:
    """Follow the autoscaler's log on the head (Ctrl-C to stop)."""
    from autoscaler.launcher import remote

    with cli_errors():
        session = remote.follow_monitor_log(cluster_config(config, cluster_name), lines)
    raise typer.Exit(_foreground(session))

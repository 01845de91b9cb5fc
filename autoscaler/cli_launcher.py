"""The cluster launcher's commands of the `rayctl` CLI (up, down, exec, attach, submit, rsync-up,
rsync-down, get-head-ip, monitor), registered on the app by `autoscaler/cli.py`. Each parses,
calls one launcher function, renders; every expected failure is a short message and exit 1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from autoscaler.commands import Interactive, PortForward
    from autoscaler.config import ClusterConfig, ClusterConfigError

# The launcher's modules are imported inside the commands: `rayctl start` on every node
# should not pay for them.

T = TypeVar("T")

ConfigArg = Annotated[str, typer.Argument(help="cluster config YAML")]
OptionalConfigArg = Annotated[
    str | None, typer.Argument(help="cluster config YAML (default: the packaged local cluster)")
]
ClusterNameOpt = Annotated[
    str | None, typer.Option("--cluster-name", "-n", help="override the config's cluster_name")
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
TmuxOpt = Annotated[bool, typer.Option("--tmux", help="run in a detached tmux session")]
ScreenOpt = Annotated[bool, typer.Option("--screen", help="run in a detached screen session")]


def config_error_message(exc: ClusterConfigError) -> str:
    """A single problem on one line (a missing file, YAML that does not parse, one bad key);
    several keep one line each under the title."""
    problems = [" ".join(problem.split()) for problem in exc.errors]  # YAML's caret art too
    title = str(exc).splitlines()[0]  # "invalid cluster config[ SOURCE] (N errors):"
    if len(problems) != 1:
        return "\n".join([title, *(f"  - {problem}" for problem in problems)])
    where = title.rsplit(" (", 1)[0]
    # Without a source the problem starts with the file's path ("<path>: cannot read: ...").
    return problems[0] if where == "invalid cluster config" else f"{where}: {problems[0]}"


@contextmanager
def _errors() -> Iterator[None]:
    """Expected failures end as a message and exit 1, never a traceback."""
    from autoscaler.cluster_head import LaunchError
    from autoscaler.config import ClusterConfigError
    from providers.base import ProviderError

    try:
        yield
    except ClusterConfigError as exc:
        typer.echo(f"error: {config_error_message(exc)}", err=True)
        raise typer.Exit(1) from None
    except (LaunchError, ProviderError, FileNotFoundError, ConnectionError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo(
            "\ninterrupted: every instance launched so far is recorded by the provider; "
            "`rayctl down CONFIG` removes them", err=True,
        )
        raise typer.Exit(130) from None


def _config(
    path: str | None, cluster_name: str | None = None, **overrides: int | None
) -> ClusterConfig:
    from autoscaler.launcher import load_cluster

    return load_cluster(path, cluster_name=cluster_name, **overrides)


def _confirm(question: str) -> bool:
    return typer.confirm(question, default=False)


def _multiplexer(tmux: bool, screen: bool) -> str | None:
    if tmux and screen:
        typer.echo("error: give --tmux or --screen, not both", err=True)
        raise typer.Exit(2)
    return "tmux" if tmux else "screen" if screen else None


def _port_forwards(given: list[str]) -> list[PortForward]:
    from autoscaler.commands import parse_port_forward

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


def _run(fn: Callable[[], T]) -> T:
    with _errors():
        return fn()


def register(app: typer.Typer) -> None:  # noqa: C901 - one nested function per command
    @app.command("up")
    def up_command(
        config: OptionalConfigArg = None,
        yes: YesOpt = False,
        no_restart: Annotated[bool, typer.Option(help="set up but do not (re)start services")] = False,
        restart_only: Annotated[bool, typer.Option(help="skip setup, restart services")] = False,
        min_workers: Annotated[int | None, typer.Option(min=0, help="override min_workers of the worker type")] = None,
        max_workers: Annotated[int | None, typer.Option(min=0, help="override max_workers")] = None,
        cluster_name: ClusterNameOpt = None,
        no_config_cache: Annotated[bool, typer.Option(help="resolve the provider config afresh")] = False,
    ) -> None:
        """Create or update a cluster: launch the head, set it up, start its services."""
        from autoscaler.cluster_head import is_local
        from autoscaler.launcher import UpOptions, connect_help, up
        from autoscaler.launcher_progress import ConsoleProgress
        if no_restart and restart_only:
            typer.echo("error: give --no-restart or --restart-only, not both", err=True)
            raise typer.Exit(2)
        progress = ConsoleProgress()
        with _errors():
            with progress.step(f"Validating {config or 'the packaged local config'}"):
                cluster = _config(config, cluster_name, min_workers=min_workers,
                                  max_workers=max_workers)
            for warning in cluster.warnings:
                progress.note(f"warning: {warning}")
            options = UpOptions(yes=yes, restart=not no_restart, restart_only=restart_only,
                                use_config_cache=not no_config_cache)
            result = up(cluster, options, progress, _confirm)
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
        keep_min_workers: Annotated[bool, typer.Option(help="keep min_workers of each type")] = False,
        purge: Annotated[bool, typer.Option(help="then delete what bootstrap created (security group, key pair, IAM role)")] = False,
        cluster_name: ClusterNameOpt = None,
    ) -> None:
        """Tear a cluster down: stop services, terminate every instance (head last)."""
        from autoscaler.cluster_head import open_provider
        from autoscaler.launcher_down import DownOptions, down
        from autoscaler.launcher_progress import ConsoleProgress
        if purge and (workers_only or keep_min_workers):
            typer.echo("error: --purge removes the whole cluster: not with --workers-only or "
                       "--keep-min-workers", err=True)
            raise typer.Exit(2)
        progress = ConsoleProgress()
        with _errors():
            cluster = _config(config, cluster_name)
            options = DownOptions(yes=yes, workers_only=workers_only,
                                  keep_min_workers=keep_min_workers)
            result = down(cluster, options, progress, _confirm)
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
        if purge:
            _run(lambda: open_provider(cluster).purge())
            typer.echo(f"Cluster {result.cluster_name!r}: purged what bootstrap created.")

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
        from autoscaler import commands
        from autoscaler.launcher import UpOptions, up
        from autoscaler.launcher_down import DownOptions, down
        from autoscaler.launcher_progress import ConsoleProgress
        forwards = _port_forwards(port_forward or [])
        with _errors():
            cluster = _config(config, cluster_name)
            multiplexer = _multiplexer(tmux, screen)
            if start:
                up(cluster, UpOptions(yes=True), ConsoleProgress(sys.stderr))
            if forwards:
                code = _foreground(commands.port_forward(cluster, command, forwards))
            else:
                ran = commands.exec_on_head(cluster, command, multiplexer=multiplexer)
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
        from autoscaler import commands

        with _errors():
            session = commands.attach(_config(config, cluster_name), _multiplexer(tmux, screen))
        raise typer.Exit(_foreground(session))

    @app.command("submit")
    def submit_command(
        config: ConfigArg,
        script: Annotated[str, typer.Argument(help="Python script to run on the head")],
        args: Annotated[list[str] | None, typer.Argument(help="arguments for the script (after --)")] = None,
        cluster_name: ClusterNameOpt = None,
    ) -> None:
        """Copy a script to the head and run it there, connected to the cluster."""
        from autoscaler import commands

        with _errors():
            ran = commands.submit(_config(config, cluster_name), script, args or [])
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
        from autoscaler import commands

        _run(lambda: commands.rsync_up(_config(config, cluster_name), source, target))
        typer.echo(f"copied {source} -> head:{target}")

    @app.command("rsync-down")
    def rsync_down_command(
        config: ConfigArg,
        source: Annotated[str, typer.Argument(help="path on the head")],
        target: Annotated[str, typer.Argument(help="local file or directory")],
        cluster_name: ClusterNameOpt = None,
    ) -> None:
        """Copy a file or directory from the head to this machine."""
        from autoscaler import commands

        where = _run(lambda: commands.rsync_down(_config(config, cluster_name), source, target))
        typer.echo(f"copied head:{source} -> {where}")

    @app.command("get-head-ip")
    def get_head_ip_command(config: ConfigArg, cluster_name: ClusterNameOpt = None) -> None:
        """Print the head node's IP address."""
        from autoscaler import commands

        typer.echo(_run(lambda: commands.get_head_ip(_config(config, cluster_name))))

    @app.command("monitor")
    def monitor_command(
        config: ConfigArg,
        lines: Annotated[int, typer.Option(help="lines of history first")] = 100,
        cluster_name: ClusterNameOpt = None,
    ) -> None:
        """Follow the autoscaler's log on the head (Ctrl-C to stop)."""
        from autoscaler import commands

        with _errors():
            session = commands.follow_monitor_log(_config(config, cluster_name), lines)
        raise typer.Exit(_foreground(session))

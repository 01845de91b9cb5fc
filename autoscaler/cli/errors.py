"""What the launcher commands share: the config argument, and expected failures as one message
and exit 1 (never a traceback)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
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
def cli_errors() -> Iterator[None]:
    """Expected failures end as a message and exit 1, never a traceback."""
    from autoscaler.config import ClusterConfigError
    from autoscaler.launcher.head import LaunchError
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


def run_reported(fn: Callable[[], T]) -> T:
    with cli_errors():
        return fn()


def cluster_config(
    path: str | None, cluster_name: str | None = None, **overrides: int | None
) -> ClusterConfig:
    from autoscaler.launcher.up import load_cluster

    return load_cluster(path, cluster_name=cluster_name, **overrides)


def confirm(question: str) -> bool:
    return typer.confirm(question, default=False)

"""The typer application every `rayctl` command registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="rayctl: a Ray-style runtime and the cluster manager that grows and shrinks it.",
)


def _version(value: bool) -> None:
    if value:
        from runtime.constants import PROTOCOL_VERSION, RAYCTL_VERSION

        typer.echo(f"rayctl {RAYCTL_VERSION} (protocol {PROTOCOL_VERSION})")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print rayctl's version and exit"),
) -> None:
    """rayctl: a Ray-style runtime and the cluster manager that grows and shrinks it."""

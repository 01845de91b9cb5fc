"""The typer application every `rayctl` command registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="rayctl: a Ray-style runtime and the cluster manager that grows and shrinks it.",
)

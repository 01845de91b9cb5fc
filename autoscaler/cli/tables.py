"""Rows as a terminal table (rich), shared by `rayctl list` and `rayctl job list`."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table


def print_rows(rows: list[dict[str, Any]], *, empty: str, title: str | None = None) -> None:
    # piped (a file, grep): as wide as the rows, so ids never fold
    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 1000)
    if not rows:
        console.print(empty)
        return
    table = Table(title=title, show_lines=False, header_style="bold")
    columns = list(rows[0])
    for column in columns:
        table.add_column(column.upper(), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)

"""How `rayctl up` / `down` show their steps: one line per step with its elapsed time — a rich
spinner while a step runs on a terminal, plain lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Protocol

from rich.console import Console


class Progress(Protocol):
    """What the launcher reports to; the CLI picks the display, tests may collect lines."""

    @contextmanager
    def step(self, title: str) -> Iterator[None]: ...

    def note(self, text: str) -> None: ...


class ConsoleProgress:
    """Steps as `[n] title ... done (1.2 s)`; on a TTY a spinner shows the running step."""

    def __init__(self, stream: IO[str] | None = None, *, force_plain: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.fancy = not force_plain and self.stream.isatty()
        self.console = Console(file=self.stream, highlight=False)
        self.count = 0
        self.started = time.monotonic()

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.count += 1
        began = time.monotonic()
        label = f"[{self.count}] {title}"
        if not self.fancy:
            self._plain(f"{label} ...")
        try:
            if self.fancy:
                with self.console.status(label):
                    yield
            else:
                yield
        except BaseException as exc:
            what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            self._line(label, what, time.monotonic() - began, ok=False)
            raise
        self._line(label, "done", time.monotonic() - began, ok=True)

    def note(self, text: str) -> None:
        if self.fancy:
            self.console.print(f"    {text}", markup=False)
        else:
            self._plain(f"    {text}")

    def total_s(self) -> float:
        return time.monotonic() - self.started

    def _line(self, label: str, what: str, elapsed_s: float, *, ok: bool) -> None:
        text = f"{label} ... {what} ({elapsed_s:.1f} s)"
        if self.fancy:
            mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
            self.console.print(f"{mark} {_escape(text)}")
        else:
            self._plain(text)

    def _plain(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)

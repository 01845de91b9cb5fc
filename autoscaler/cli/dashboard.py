"""`rayctl dashboard [CONFIG]` (Ray's `ray dashboard`): the head's dashboard in this machine's
browser. A head on another machine gets its web port forwarded over the launcher's SSH
connection (to local port 8265, or a free one when that is taken) for as long as the command
runs; the URL is printed with a one-time login link."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from typing import Annotated, Any

import typer

from autoscaler.cli.app import app
from autoscaler.cli.job import AddressOpt

DEFAULT_LOCAL_PORT = 8265


@app.command("dashboard")
def dashboard(
    config: Annotated[str | None, typer.Argument(
        help="a cluster config `rayctl up` started (default: the cluster on this machine)")] = None,
    address: AddressOpt = None,
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help=(
        "this machine's end of the forward, for a head on another machine (0: any free "
        "port)"))] = DEFAULT_LOCAL_PORT,
) -> None:
    """Print the dashboard's URL and a one-time login link; with a remote head, keep its port
    forwarded here until Ctrl-C."""
    from autoscaler.web.client import WebClient, WebError

    async def link(target: Any) -> str:
        async with WebClient(target) as client:
            reply: dict[str, Any] = await client.call("POST", "/api/login-links")
            return str(reply["path"])

    try:
        stack, target = _reach_on(address, config, port)
        with stack:
            path = asyncio.run(link(target))
            typer.echo(f"Dashboard: {target.url}")
            typer.echo(f"  log in once with {target.url}{path}  (valid for 5 minutes; "
                       "or paste the cluster token on the login page)")
            if target.forwarded:
                typer.echo("  The head's port is forwarded here until Ctrl-C.")
                _wait_for_interrupt()
    except WebError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _reach_on(address: str | None, config: str | None, port: int) -> Any:
    """The service reached through local `port`, or a free one when that is taken (said on
    stderr): an ExitStack holding the forward."""
    from autoscaler.web.client import WebError, reach

    stack = contextlib.ExitStack()
    try:
        return stack, stack.enter_context(reach(address, config, local_port=port))
    except WebError as exc:
        if not config or not port or "in use" not in str(exc):
            raise
    typer.echo(f"port {port} is taken here: forwarding to a free one", err=True)
    return stack, stack.enter_context(reach(address, config, local_port=0))


def _wait_for_interrupt() -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(3600):
        pass

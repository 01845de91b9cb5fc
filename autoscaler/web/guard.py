"""The web port's caps before authentication, as the cluster's other listeners have them
(runtime/listener_caps.py): a connection that has not made a request carrying the token within
`deadline_s` of connecting is closed, and past `cap` such connections the oldest is closed first.
So idle sockets, a slow client dribbling headers (slowloris) or a flood of connections cost the
head a few KiB each for a few seconds, while a client with the token never notices. Connections
that did authenticate are left to aiohttp's keep-alive timeout. A TLS handshake gets the same
deadline.

aiohttp has no such caps of its own, so the listener is ours: each connection's aiohttp protocol
sits behind a thin one that admits it, and the auth middleware calls `authenticated`."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

from runtime.listener_caps import MAX_UNAUTHENTICATED, Unauthenticated

DEADLINE_S = 10.0  # a person's browser may open a connection a little before it uses it


class Guard:
    def __init__(self, cap: int = MAX_UNAUTHENTICATED, deadline_s: float = DEADLINE_S) -> None:
        self.deadline_s = deadline_s
        self.waiting = Unauthenticated(cap)
        self._timers: dict[int, asyncio.TimerHandle] = {}

    def admit(self, transport: asyncio.BaseTransport) -> None:
        key = id(transport)
        self.waiting.admit(key, transport.close)
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(self.deadline_s, self._expire, transport)

    def authenticated(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is not None:
            self._forget(id(transport))

    def closed(self, transport: asyncio.BaseTransport) -> None:
        self._forget(id(transport))

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        self._forget(id(transport))
        transport.close()

    def _forget(self, key: int) -> None:
        self.waiting.done(key)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def __len__(self) -> int:
        return len(self.waiting)


class _Admitted(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the guard."""

    def __init__(self, inner: Any, guard: Guard) -> None:
        self.inner, self.guard = inner, guard
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.guard.admit(transport)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self.inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.guard.closed(self.transport)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


async def serve(runner: web.AppRunner, guard: Guard, host: str, port: int,
                ssl_context: ssl.SSLContext | None = None) -> asyncio.Server:
    """Listen for `runner`'s app (set up already) with every connection behind `guard`."""
    make: Callable[[], Any] | None = runner.server
    assert make is not None, "runner.setup() first"
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: _Admitted(make(), guard), host, port, ssl=ssl_context, backlog=256,
        ssl_handshake_timeout=guard.deadline_s if ssl_context is not None else None)

"""The web port's caps before authentication (autoscaler/web/guard.py), on a real listener with
the head's auth middleware: idle sockets, a slow client dribbling headers and requests without
the token are closed at the deadline, a flood past the cap closes the oldest first, and a client
with the token keeps its connection and is served throughout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from autoscaler.web import auth
from autoscaler.web.guard import Guard, serve

TOKEN = "t" * 32
DEADLINE_S = 0.5
CAP = 8


def _app(guard: Guard) -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application(middlewares=[auth.middleware(TOKEN, guard)])
    app.add_routes([web.get("/", hello)])
    return app


Run = Callable[[Callable[[Guard, int], Awaitable[None]]], None]


@pytest.fixture
def run() -> Run:
    """run(scenario): serve a guarded app on a free loopback port for `scenario(guard, port)`."""
    def go(scenario: Callable[[Guard, int], Awaitable[None]]) -> None:
        async def main() -> None:
            guard = Guard(cap=CAP, deadline_s=DEADLINE_S)
            runner = web.AppRunner(_app(guard), access_log=None)
            await runner.setup()
            listener = await serve(runner, guard, "127.0.0.1", 0)
            try:
                await scenario(guard, listener.sockets[0].getsockname()[1])
            finally:
                listener.close()
                await runner.cleanup()

        asyncio.run(asyncio.wait_for(main(), 30))
    return go


async def _closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    try:
        while await asyncio.wait_for(reader.read(4096), within_s):
            pass  # a 401 body, say: read on to the close
        return True
    except (ConnectionError, asyncio.IncompleteReadError):
        return True
    except TimeoutError:
        return False


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               token: str | None) -> bytes:
    header = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(f"GET / HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    return head.split(b"\r\n")[0] + b" " + await reader.readexactly(length)


def test_idle_slow_and_tokenless_connections_close_at_the_deadline(run: Run) -> None:
    async def scenario(guard: Guard, port: int) -> None:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        slow_reader, slow = await asyncio.open_connection("127.0.0.1", port)
        no_token = await asyncio.open_connection("127.0.0.1", port)
        assert await _get(*no_token, None) == b"HTTP/1.1 401 Unauthorized " + auth.UNAUTHORIZED.encode()
        user = await asyncio.open_connection("127.0.0.1", port)
        assert await _get(*user, TOKEN) == b"HTTP/1.1 200 OK hello"
        start = time.monotonic()
        slow.write(b"GET / HTTP/1.1\r\n")
        for _ in range(int(DEADLINE_S * 2 / 0.1)):  # a header line every 0.1 s: never done
            if slow.is_closing() or slow_reader.at_eof():
                break
            slow.write(b"X-Slow: 1\r\n")
            await asyncio.sleep(0.1)
        for reader, _ in [*idle, (slow_reader, slow), no_token]:
            assert await _closed_by_server(reader, DEADLINE_S * 2)
        assert time.monotonic() - start < DEADLINE_S * 4
        assert len(guard) == 0
        # the client with the token kept its connection past the deadline, and is served on it
        assert await _get(*user, TOKEN) == b"HTTP/1.1 200 OK hello"
        for _, writer in [*idle, (slow_reader, slow), no_token, user]:
            writer.close()

    run(scenario)


def test_a_flood_past_the_cap_closes_the_oldest_first(run: Run) -> None:
    async def scenario(guard: Guard, port: int) -> None:
        flood = [await asyncio.open_connection("127.0.0.1", port) for _ in range(CAP * 3)]
        user = await asyncio.open_connection("127.0.0.1", port)  # newest: it gets its turn
        assert await _get(*user, TOKEN) == b"HTTP/1.1 200 OK hello"
        oldest, newest = flood[:CAP * 2 + 1], flood[CAP * 2 + 1:]
        for reader, _ in oldest:  # closed at once to make room, long before the deadline
            assert await _closed_by_server(reader, DEADLINE_S / 2)
        assert len(guard) == len(newest) == CAP - 1
        assert guard.waiting.dropped == len(oldest)
        for _, writer in [*flood, user]:
            writer.close()

    run(scenario)

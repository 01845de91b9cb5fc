"""Reports from this node that change the GCS's durable state (an actor's worker died, a driver's
job ended): each is sent until the GCS acknowledges it, across GCS restarts and Redis outages,
and is safe to receive twice (the GCS recognises a repeat). A report is dropped only when this
raylet stops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

log = logging.getLogger("rayctl.raylet")

# Backoff between tries: the first retry is quick (a lost reply), later ones wait out a GCS or
# Redis restart (~0.5 s here) without hammering a GCS that is coming up.
FIRST_RETRY_S = 0.05
MAX_RETRY_S = 2.0
# What a call may take before it counts as lost (the GCS answers these in ~1 ms).
CALL_TIMEOUT_S = 10.0

Call = Callable[[str, Any, float], Awaitable[Any]]


class GcsReports:
    def __init__(self, call: Call, stopping: asyncio.Event) -> None:
        self._call = call
        self._stopping = stopping
        self._pending: set[asyncio.Task[None]] = set()

    def send(self, method: str, request: Any, what: str) -> None:
        """Deliver `request` to the GCS's `method` in the background; `what` names it in logs."""
        task = asyncio.ensure_future(self._deliver(method, request, what))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    @property
    def pending(self) -> int:
        """Reports not yet acknowledged."""
        return len(self._pending)

    async def _deliver(self, method: str, request: Any, what: str) -> None:
        delay = FIRST_RETRY_S
        tries = 0
        while not self._stopping.is_set():
            tries += 1
            try:
                await self._call(method, request, CALL_TIMEOUT_S)
                if tries > 1:
                    log.info("reported %s after %d tries", what, tries)
                return
            except grpc.aio.AioRpcError as exc:
                if tries == 1:
                    log.warning("could not report %s yet (%s); retrying until the GCS takes it",
                                what, exc.details())
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, MAX_RETRY_S)
        log.warning("this node stops: %s was never acknowledged by the GCS", what)

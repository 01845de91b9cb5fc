"""Long-polling a GCS record: answer once its version passes what the caller has seen, or at the
timeout. Used by GetActor and GetPlacementGroup, so callers wait on changes without polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def wait_for_version(changed: asyncio.Condition, read: Callable[[], Any], after_version: int,
                           timeout_s: float) -> Any:
    """`read()` once it returns None or a record with `version > after_version`, or at the timeout."""
    deadline = time.monotonic() + timeout_s
    async with changed:
        while True:
            record = read()
            if record is None or record.version > after_version or time.monotonic() >= deadline:
                return record
            try:
                await asyncio.wait_for(changed.wait(), deadline - time.monotonic())
            except TimeoutError:
                return read()

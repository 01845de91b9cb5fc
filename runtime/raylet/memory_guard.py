"""The raylet's memory loop: every refresh, read node memory and, over the threshold, kill one
worker chosen by `memory_monitor.pick_victim`, handing its error text to `kill`.

Its parts are injected (the reader, what runs, how to kill), so the raylet wires its worker pool
in and a test drives it with a fake reader and real processes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from runtime.raylet.memory_monitor import (
    DEFAULT_REFRESH_MS,
    DEFAULT_USAGE_THRESHOLD,
    RunningWork,
    Victim,
    oom_message,
    over_threshold,
    pick_victim,
)
from runtime.raylet.node_memory import MemoryReader

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MemoryGuardSettings:
    usage_threshold: float = DEFAULT_USAGE_THRESHOLD  # 0 disables
    refresh_ms: int = DEFAULT_REFRESH_MS  # 0 disables


class MemoryGuard:
    def __init__(
        self,
        node_id: str,
        settings: MemoryGuardSettings,
        read_memory: MemoryReader,
        running: Callable[[], Sequence[RunningWork]],
        kill: Callable[[Victim, str], None],
    ) -> None:
        self.node_id = node_id
        self.settings = settings
        self.read_memory = read_memory
        self.running = running
        self.kill = kill

    @property
    def enabled(self) -> bool:
        return self.settings.usage_threshold > 0 and self.settings.refresh_ms > 0

    def check_once(self) -> Victim | None:
        """One round: the victim killed, or None when under the threshold or nothing runs."""
        memory = self.read_memory()
        if not over_threshold(memory, self.settings.usage_threshold):
            return None
        victim = pick_victim(self.running())
        if victim is None:
            return None
        message = oom_message(self.node_id, memory, self.settings.usage_threshold, victim)
        log.warning("memory monitor kills worker pid %d: %s", victim.work.worker_pid, message)
        self.kill(victim, message)
        return victim

    async def run(self) -> None:
        """Check every refresh until cancelled; one failed round is logged, not fatal."""
        if not self.enabled:
            return
        while True:
            try:
                self.check_once()
            except Exception:  # a bad read must not end the guard for good
                log.exception("memory monitor round failed")
            await asyncio.sleep(self.settings.refresh_ms / 1000)

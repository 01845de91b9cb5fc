"""The raylet's side of the memory monitor: what runs on this node as the policy sees it, and how
a chosen worker is killed so that its owner learns why.

A leased worker's owner is told first ("oom_killed" with the lease and the message, answered or
given up after a second), then the worker is killed: the owner retries the task if it has retries
left, else its `get` raises OutOfMemoryError with that message. An actor's worker is killed with
the message as its death reason, which the GCS records (and restarts it if it may).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from runtime.raylet.memory_guard import MemoryGuard, MemoryGuardSettings
from runtime.raylet.memory_monitor import (
    DEFAULT_REFRESH_MS,
    DEFAULT_USAGE_THRESHOLD,
    RunningWork,
    Victim,
    WorkKind,
)
from runtime.raylet.node_memory import MemoryReader, read_node_memory
from runtime.raylet.worker_pool import Worker

if TYPE_CHECKING:
    from runtime.raylet.server import Raylet

log = logging.getLogger("rayctl.raylet.oom")

THRESHOLD_ENV = "RAYCTL_MEMORY_USAGE_THRESHOLD"  # as Ray's RAY_memory_usage_threshold
REFRESH_ENV = "RAYCTL_MEMORY_MONITOR_REFRESH_MS"  # as Ray's RAY_memory_monitor_refresh_ms
TELL_OWNER_TIMEOUT_S = 1.0


def settings_from_env(environ: dict[str, str] | None = None) -> MemoryGuardSettings:
    """The threshold (a fraction in [0, 1], 0 turns the monitor off) and the refresh period."""
    env = os.environ if environ is None else environ
    try:
        threshold = float(env.get(THRESHOLD_ENV, DEFAULT_USAGE_THRESHOLD))
        refresh_ms = int(env.get(REFRESH_ENV, DEFAULT_REFRESH_MS))
    except ValueError as exc:
        raise ValueError(
            f"{THRESHOLD_ENV} must be a fraction such as 0.95 and {REFRESH_ENV} whole "
            f"milliseconds such as 250 ({exc})"
        ) from exc
    if not 0 <= threshold <= 1 or refresh_ms < 0:
        raise ValueError(
            f"{THRESHOLD_ENV}={threshold} / {REFRESH_ENV}={refresh_ms} out of range: the "
            "threshold is a fraction between 0 and 1 (0 turns the monitor off), the refresh "
            "0 or more milliseconds"
        )
    return MemoryGuardSettings(threshold, refresh_ms)


def make_guard(
    raylet: Raylet, settings: MemoryGuardSettings, read_memory: MemoryReader = read_node_memory
) -> MemoryGuard:
    return MemoryGuard(
        raylet.node_id,
        settings,
        read_memory,
        lambda: running_work(raylet),
        lambda victim, message: kill_for_memory(raylet, victim, message),
    )


def running_work(raylet: Raylet) -> list[RunningWork]:
    """Leased and actor workers not already being killed."""
    if raylet.pool is None:
        return []
    work = []
    for worker in raylet.pool.workers.values():
        if worker.dead or worker.death_note or not (worker.lease_id or worker.actor_id):
            continue
        kind = WorkKind.ACTOR if worker.actor_id else WorkKind.TASK
        owner = worker.owner
        owner_id = str(owner.peer_info.get("address") or id(owner)) if owner is not None else ""
        name = f"actor {worker.actor_id}" if worker.actor_id else f"its worker (pid {worker.pid})"
        work.append(
            RunningWork(worker.pid, kind, owner_id, worker.busy_since, worker.retriable, name)
        )
    return work


def kill_for_memory(raylet: Raylet, victim: Victim, message: str) -> None:
    worker = _by_pid(raylet, victim.work.worker_pid)
    if worker is None or worker.dead or worker.death_note:
        return
    worker.death_note = message
    asyncio.ensure_future(_tell_then_kill(raylet, worker, message))


async def _tell_then_kill(raylet: Raylet, worker: Worker, message: str) -> None:
    owner = worker.owner
    if worker.lease_id and owner is not None and owner.is_open:
        try:
            await asyncio.wait_for(
                owner.request("oom_killed", {"lease_id": worker.lease_id, "message": message}),
                TELL_OWNER_TIMEOUT_S,
            )
        except Exception as exc:  # noqa: BLE001 - gone, slow, or an owner that does not know the call
            log.warning("could not tell the owner of lease %s why: %s", worker.lease_id, exc)
    assert raylet.pool is not None
    raylet.pool.kill(worker)


def _by_pid(raylet: Raylet, pid: int) -> Worker | None:
    if raylet.pool is None:
        return None
    return next((w for w in raylet.pool.workers.values() if w.pid == pid), None)

"""The raylet's side of the drain protocol (the GCS's: runtime/gcs/drain.py; the autoscaler's:
autoscaler/drain.py). A drain request is answered at once; once accepted the node takes no new
work, and what still holds it rides on every heartbeat (NodeDrain) until nothing does."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from runtime.protocol import common_pb2, raylet_pb2
from runtime.tls import ClusterTls
from runtime.transport import Connection, connect

if TYPE_CHECKING:
    from runtime.raylet.server import Raylet

log = logging.getLogger("rayctl.raylet.drain")

# An owner that does not complete a handshake this fast counts as gone: its objects can never be
# freed, so they must not hold a drain (a live owner on another node answers in ~1 ms).
PROBE_TIMEOUT_S = 0.5
# How often a drain held by objects looks again whether their owners are alive.
PROBE_INTERVAL_S = 1.0

# Who owns a primary copy: the local process that put it (its connection to this raylet), or the
# listening address of the caller of the task that returned it.
Owner = Connection | str


class ObjectOwners:
    """The owner of each primary copy on this node, to tell objects still in use from objects
    whose owner is gone (nobody will ever free those)."""

    def __init__(self) -> None:
        self._owner: dict[str, Owner] = {}
        self._gone: set[str] = set()  # addresses that did not answer: a process does not come back

    def sealed(self, object_id: str, owner: Owner) -> None:
        self._owner[object_id] = owner

    def deleted(self, object_id: str) -> None:
        self._owner.pop(object_id, None)

    def owned_by(self, owners: set[Owner]) -> list[str]:
        """Primary copies here whose owner is one of `owners`."""
        return [oid for oid, owner in self._owner.items() if owner in owners]

    def remote_addresses(self) -> list[str]:
        """Owners on other processes named by primary copies here, not yet known gone."""
        return sorted({o for o in self._owner.values() if isinstance(o, str)} - self._gone)

    def mark_gone(self, address: str) -> None:
        self._gone.add(address)

    def held(self) -> int:
        """Primary copies whose owner may still use them."""
        return sum(1 for owner in self._owner.values() if self._alive(owner))

    def _alive(self, owner: Owner) -> bool:
        return owner not in self._gone if isinstance(owner, str) else owner.is_open

    async def probe(self, token: str, tls: ClusterTls | None) -> None:
        """Find out which owners on other processes still answer (all at once, bounded)."""
        addresses = self.remote_addresses()
        answers = await asyncio.gather(*(_answers(address, token, tls) for address in addresses))
        self._gone.update(a for a, ok in zip(addresses, answers, strict=True) if not ok)


async def _answers(address: str, token: str, tls: ClusterTls | None) -> bool:
    try:
        conn = await connect(address, token, info={"role": "owner-probe"}, timeout_s=PROBE_TIMEOUT_S,
                             tls=tls)
    except Exception:  # noqa: BLE001 - refused, silent or not a rayctl process: gone either way
        return False
    conn.close()
    return True


class Drain:
    """One accepted drain: its terms, and whether it is over (once over, it stays over)."""

    def __init__(self, request: raylet_pb2.DrainRequest, now: float) -> None:
        self.reason = request.reason
        self.started_at = now
        self.deadline = now + request.deadline_s if request.deadline_s > 0 else 0.0
        self.force = request.force
        self.drained = False

    def progress(self, leases: int, actors: int, objects: int, now: float) -> common_pb2.NodeDrain:
        held = bool(leases or actors or (objects and not self.force))
        if not self.drained and (not held or (self.deadline and now >= self.deadline)):
            self.drained = True
            log.info("drained (%d lease(s), %d actor(s), %d object(s) left): %s",
                     leases, actors, objects, self.reason)
        return common_pb2.NodeDrain(
            reason=self.reason, started_at=self.started_at, deadline=self.deadline,
            force=self.force, drained=self.drained, leases=leases, actors=actors, objects=objects)


def progress(r: Raylet) -> common_pb2.NodeDrain | None:
    """The drain's progress for the next heartbeat; None while the node does not drain."""
    if r.drain is None:
        return None
    return r.drain.progress(len(r.leases), len(r.actor_workers), r.owners.held(), time.time())


async def request_drain(r: Raylet, request: raylet_pb2.DrainRequest) -> raylet_pb2.DrainReply:
    """Accept or reject at once (owner probes take at most PROBE_TIMEOUT_S)."""
    if r.drain is not None:
        return raylet_pb2.DrainReply(accepted=True, reason="already draining", drain=progress(r))
    busy = _busy(r)
    if request.idle_only and busy:
        return _rejected(f"node {r.node_id} is busy ({busy}) and the drain was for an idle node")
    if not request.force:
        await r.owners.probe(r.token, r.tls)
        objects = r.owners.held()
        if objects:
            return _rejected(
                f"node {r.node_id} holds the primary copy of {objects} object(s) still referenced; "
                "drain with force=True to drop them")
    r.drain = Drain(request, time.time())
    r.dispatch()  # nothing queued is granted here any more; what can go elsewhere does
    asyncio.ensure_future(_watch_owners(r, r.drain))
    r.mark_load_changed()  # report the drain with the next heartbeat, not a tick later
    log.info("draining (%s): %s", busy or "idle", request.reason or "no reason given")
    return raylet_pb2.DrainReply(accepted=True, drain=progress(r))


def _rejected(reason: str) -> raylet_pb2.DrainReply:
    log.info("drain rejected: %s", reason)
    return raylet_pb2.DrainReply(accepted=False, reason=reason)


def _busy(r: Raylet) -> str:
    """What runs or waits here now ('' when idle)."""
    queued = sum(not req.future.done() for req in r.queue)
    parts = [(len(r.leases), "running task"), (len(r.actor_workers), "actor"),
             (queued, "queued lease request")]
    return ", ".join(f"{n} {what}{'s' if n > 1 else ''}" for n, what in parts if n)


async def _watch_owners(r: Raylet, drain: Drain) -> None:
    """While objects hold the drain, notice their owners going away."""
    while not drain.drained and not r.stopping.is_set():
        await asyncio.sleep(PROBE_INTERVAL_S)
        if r.owners.held() and not drain.force:
            await r.owners.probe(r.token, r.tls)

"""Actor placement and restarts, owned by the GCS: pick a node with room, ask its raylet to start
the actor's worker, restart on death up to max_restarts, keep pending actors as demand."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from runtime.auth import Credentials
from runtime.gcs.long_poll import wait_for_version
from runtime.gcs.tables import Tables
from runtime.grpc_auth import open_aio_channel
from runtime.protocol import common_pb2, raylet_pb2, raylet_pb2_grpc
from runtime.protocol.common_pb2 import ActorInfo, NodeInfo
from runtime.resources import fits

log = logging.getLogger("rayctl.gcs.actors")


class ActorManager:
    def __init__(self, tables: Tables, credentials: Credentials) -> None:
        self.t = tables
        self._credentials = credentials
        self._changed = asyncio.Condition()
        self._wake = asyncio.Event()
        self._channels: dict[str, raylet_pb2_grpc.RayletStub] = {}
        self._starting: dict[str, str] = {}  # actor id -> the node it is being started on

    def wake(self) -> None:
        self._wake.set()

    def raylet(self, node: common_pb2.NodeInfo) -> raylet_pb2_grpc.RayletStub:
        addr = f"{node.address}:{node.raylet_port}"
        stub = self._channels.get(addr)
        if stub is None:
            stub = raylet_pb2_grpc.RayletStub(open_aio_channel(addr, self._credentials.token, tls=self._credentials.tls))
            self._channels[addr] = stub
        return stub

    async def _save(self, actor: common_pb2.ActorInfo) -> None:
        """A new actor: in Redis, then in memory, then its waiters hear of it."""
        await self.t.put_actor(actor)
        async with self._changed:
            self._changed.notify_all()

    @asynccontextmanager
    async def _changing(self, actor: common_pb2.ActorInfo) -> AsyncIterator[common_pb2.ActorInfo]:
        """Change a known actor: the draft reaches Redis, then `actor`, then its waiters."""
        async with self.t.edit(actor) as draft:
            yield draft
        async with self._changed:
            self._changed.notify_all()

    async def create(self, actor: common_pb2.ActorInfo) -> tuple[common_pb2.ActorInfo, str]:
        known = self.t.actors.get(actor.actor_id)
        if known is not None:  # a driver's retry after a lost reply: not a second actor
            return known, ""
        if actor.name:
            existing_id = self.t.named.get(f"{actor.namespace}/{actor.name}")
            existing = self.t.actors.get(existing_id or "")
            if existing is not None and existing.state != ActorInfo.DEAD:
                return (
                    existing,
                    f"an actor named {actor.name!r} already exists in namespace {actor.namespace!r}",
                )
            await self.t.put_name(actor.namespace, actor.name, actor.actor_id)
        actor.state = ActorInfo.PENDING
        await self._save(actor)
        self.wake()
        return actor, ""

    async def get(
        self, actor_id: str, name: str, namespace: str, after_version: int, timeout_s: float
    ) -> common_pb2.ActorInfo | None:
        if not actor_id and name:
            actor_id = self.t.named.get(f"{namespace}/{name}", "")
        return await wait_for_version(self._changed, lambda: self.t.actors.get(actor_id), after_version,
                                      timeout_s)

    async def scheduler_loop(self) -> None:
        """Place PENDING/RESTARTING actors whenever something changed (and every second)."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except TimeoutError:
                pass
            self._wake.clear()
            for actor in list(self.t.actors.values()):
                if (
                    actor.state in (ActorInfo.PENDING, ActorInfo.RESTARTING)
                    and actor.actor_id not in self._starting
                ):
                    node = self._pick_node(actor)
                    if node is not None:
                        self._starting[actor.actor_id] = node.node_id
                        asyncio.ensure_future(self._start_on(actor, node))

    def _pick_node(self, actor: common_pb2.ActorInfo) -> common_pb2.NodeInfo | None:
        need = dict(actor.resources)
        alive = [n for n in self.t.nodes.values() if n.state == NodeInfo.ALIVE]
        if actor.affinity_node_id:
            target = next((n for n in alive if n.node_id == actor.affinity_node_id), None)
            if target is not None:
                return target if fits(need, dict(target.available)) else None
            if not actor.affinity_soft:
                return None
        candidates = [n for n in alive if fits(need, dict(n.available))]
        if not candidates:
            return None
        if actor.spread:  # the node hosting the fewest actors, counting those starting there now
            hosted = {n.node_id: 0 for n in candidates}
            for other in self.t.actors.values():
                if other.state == ActorInfo.ALIVE and other.node_id in hosted:
                    hosted[other.node_id] += 1
            for node_id in self._starting.values():
                if node_id in hosted:
                    hosted[node_id] += 1
            return min(candidates, key=lambda n: (hosted[n.node_id], n.node_id))
        # the node with the most free CPU first
        return max(candidates, key=lambda n: n.available.get("CPU", 0.0))

    async def _start_on(self, actor: common_pb2.ActorInfo, node: common_pb2.NodeInfo) -> None:
        try:  # counted as starting there until the table says where it runs
            await self._start(actor, node)
        finally:
            self._starting.pop(actor.actor_id, None)

    async def _start(self, actor: common_pb2.ActorInfo, node: common_pb2.NodeInfo) -> None:
        try:
            reply = await self.raylet(node).StartActor(
                raylet_pb2.StartActorRequest(actor=actor), timeout=600
            )
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "starting actor %s on node %s failed: %s",
                actor.actor_id,
                node.node_id,
                exc.details(),
            )
            reply = None
        if actor.state == ActorInfo.DEAD:  # killed while starting
            return
        if reply is None or reply.no_room:
            self.wake()
            return
        async with self._changing(actor) as draft:
            if reply.error:
                draft.state = ActorInfo.DEAD
                draft.death_cause = reply.error
            else:
                draft.state = ActorInfo.ALIVE
                draft.address = reply.address
                draft.node_id = node.node_id
                draft.pid = reply.pid

    async def on_actor_died(self, actor_id: str, reason: str, worker_address: str = "") -> None:
        """An actor's worker died. Reports are retried until acknowledged, so the same death
        may arrive twice, or after the actor was already restarted (its node died first): only
        a report naming the incarnation the table holds (its worker's address) counts."""
        actor = self.t.actors.get(actor_id)
        if actor is None or actor.state == ActorInfo.DEAD:
            return
        if worker_address and actor.address != worker_address:
            log.info("actor %s: a late report of an earlier worker's death (%s); ignored",
                     actor_id, worker_address)
            return
        await self._restart_or_bury(actor, reason)

    async def _restart_or_bury(self, actor: common_pb2.ActorInfo, reason: str) -> None:
        dead_worker = actor.address
        if actor.max_restarts == -1 or actor.num_restarts < actor.max_restarts:
            async with self._changing(actor) as draft:
                draft.num_restarts += 1
                draft.state = ActorInfo.RESTARTING
                draft.address = ""
                draft.death_cause = reason  # the last death's, for callers whose calls it broke
            log.info("restarting actor %s (%d): %s", actor.actor_id, actor.num_restarts, reason)
            self.wake()
            # its new incarnation is another process: what the dead one owned dies with it
            await self._owner_died(dead_worker, f"{actor.class_name}({actor.actor_id})")
        else:
            await self._bury(actor, reason)

    async def _bury(self, actor: common_pb2.ActorInfo, reason: str) -> None:
        dead_worker = actor.address
        async with self._changing(actor) as draft:
            draft.state = ActorInfo.DEAD
            draft.death_cause = reason
            draft.address = ""
        if actor.name and self.t.named.get(f"{actor.namespace}/{actor.name}") == actor.actor_id:
            await self.t.put_name(actor.namespace, actor.name, None)
        await self._owner_died(dead_worker, f"{actor.class_name}({actor.actor_id})")

    async def _owner_died(self, owner_address: str, owner: str) -> None:
        """Fate-sharing, as in Ray: the actors a dead actor's worker created die with it, unless
        detached (and theirs with them)."""
        if not owner_address:
            return
        for child in list(self.t.actors.values()):
            if (child.owner_address == owner_address and not child.detached
                    and child.state != ActorInfo.DEAD):
                await self.kill(child.actor_id, no_restart=True,
                                reason=f"its owner, actor {owner}, died")

    async def on_node_dead(self, node_id: str, reason: str) -> None:
        for actor in list(self.t.actors.values()):
            if actor.node_id == node_id and actor.state == ActorInfo.ALIVE:
                await self._restart_or_bury(actor, f"its node died ({reason})")

    async def kill(self, actor_id: str, no_restart: bool,
                   reason: str = "killed by rt.kill()") -> None:
        actor = self.t.actors.get(actor_id)
        if actor is None or actor.state == ActorInfo.DEAD:
            return
        node = self.t.nodes.get(actor.node_id)
        if no_restart:
            await self._bury(actor, reason)
        if node is not None and node.state != NodeInfo.DEAD:  # a draining node still runs it
            try:
                await self.raylet(node).KillActorWorker(
                    raylet_pb2.KillActorWorkerRequest(actor_id=actor_id, force=True),
                    timeout=10,
                )
            except grpc.aio.AioRpcError as exc:
                log.warning("could not kill actor %s: %s", actor_id, exc.details())

    async def on_job_finished(self, job_id: str) -> None:
        for actor in list(self.t.actors.values()):
            if actor.job_id == job_id and not actor.detached and actor.state != ActorInfo.DEAD:
                await self.kill(actor.actor_id, no_restart=True)

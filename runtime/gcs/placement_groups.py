"""Placement groups, owned by the GCS: place the bundles (pg_placement), reserve them on every
node in two phases (prepare everywhere, then commit; any refusal cancels the prepared ones and the
group stays pending), release on removal, re-place when a node holding a bundle dies."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from runtime.gcs.long_poll import wait_for_version
from runtime.gcs.pg_placement import place
from runtime.gcs.tables import Tables
from runtime.protocol import common_pb2, raylet_pb2

log = logging.getLogger("rayctl.gcs.pg")


class PlacementGroupManager:
    def __init__(self, tables: Tables, raylet_stub, metadata) -> None:  # type: ignore[no-untyped-def]
        self.t = tables
        self.raylet = raylet_stub  # NodeInfo -> RayletStub
        self.md = metadata
        self._changed = asyncio.Condition()
        self._wake = asyncio.Event()
        self._placing: set[str] = set()

    def wake(self) -> None:
        self._wake.set()

    async def _save(self, pg: common_pb2.PlacementGroupInfo) -> None:
        await self.t.put_pg(pg)
        async with self._changed:
            self._changed.notify_all()

    async def create(self, pg: common_pb2.PlacementGroupInfo) -> tuple[common_pb2.PlacementGroupInfo, str]:
        if pg.strategy not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
            return pg, f"unknown strategy {pg.strategy!r}: use PACK, SPREAD, STRICT_PACK or STRICT_SPREAD"
        if pg.name and any(p.name == pg.name and p.namespace == pg.namespace and p.state != "REMOVED"
                           for p in self.t.pgs.values()):
            return pg, f"a placement group named {pg.name!r} already exists"
        pg.state = "PENDING"
        pg.created_at = time.time()
        await self._save(pg)
        await self._try_place(pg)  # most groups fit at once: the reply can say CREATED
        if pg.state == "PENDING":
            self.wake()
        return pg, ""

    async def get(self, pg_id: str, name: str, namespace: str, after_version: int,
                  timeout_s: float) -> common_pb2.PlacementGroupInfo | None:
        if not pg_id and name:
            pg_id = next((p.pg_id for p in self.t.pgs.values()
                          if p.name == name and p.namespace == namespace and p.state != "REMOVED"), "")
        return await wait_for_version(self._changed, lambda: self.t.pgs.get(pg_id), after_version, timeout_s)

    async def scheduler_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except TimeoutError:
                pass
            self._wake.clear()
            for pg in sorted(self.t.pgs.values(), key=lambda p: p.created_at):
                if pg.state == "PENDING":
                    await self._try_place(pg)

    async def _try_place(self, pg: common_pb2.PlacementGroupInfo) -> None:
        """Place a pending group once at a time (creation and the loop may both try)."""
        if pg.pg_id in self._placing:
            return
        self._placing.add(pg.pg_id)
        try:
            await self._place(pg)
        finally:
            self._placing.discard(pg.pg_id)

    async def _place(self, pg: common_pb2.PlacementGroupInfo) -> None:
        alive = {n.node_id: n for n in self.t.nodes.values() if n.state == "ALIVE"}
        bundles = [dict(b.resources) for b in pg.bundles]
        placement = place(bundles, pg.strategy, {nid: dict(n.available) for nid, n in alive.items()})
        if placement is None:
            return
        by_node: dict[str, list[common_pb2.Bundle]] = {}
        for bundle, node_id in zip(pg.bundles, placement, strict=True):
            by_node.setdefault(node_id, []).append(bundle)
        one_node = len(by_node) == 1  # then prepare and commit are one call
        prepared = []
        for node_id, node_bundles in by_node.items():
            if await self._call(alive[node_id], "PrepareBundles", pg.pg_id, node_bundles, commit=one_node):
                prepared.append(node_id)
            else:
                for done in prepared:
                    await self._call(alive[done], "CancelBundles", pg.pg_id, by_node[done])
                return
        for node_id, node_bundles in by_node.items():
            if not one_node:
                await self._call(alive[node_id], "CommitBundles", pg.pg_id, node_bundles)
            node = alive[node_id]
            for b in node_bundles:  # keep the view honest until the next heartbeat
                for name, amount in b.resources.items():
                    node.available[name] = node.available.get(name, 0.0) - amount
        if pg.state != "PENDING":  # removed meanwhile
            for node_id, node_bundles in by_node.items():
                await self._call(alive[node_id], "CancelBundles", pg.pg_id, node_bundles)
            return
        pg.state = "CREATED"
        del pg.bundle_node_ids[:]
        pg.bundle_node_ids.extend(placement)
        await self._save(pg)
        asyncio.ensure_future(  # the event log needs no wait
            self.t.event("placement_group_created", f"{pg.pg_id} ({pg.strategy}) on {sorted(set(placement))}"))

    async def _call(self, node: common_pb2.NodeInfo, method: str, pg_id: str,
                    bundles: list[common_pb2.Bundle], commit: bool = False) -> bool:
        try:
            reply = await getattr(self.raylet(node), method)(
                raylet_pb2.BundleRequest(pg_id=pg_id, bundles=bundles, commit=commit),
                metadata=self.md, timeout=10)
        except grpc.aio.AioRpcError as exc:
            log.warning("%s of %s on node %s failed: %s", method, pg_id, node.node_id, exc.details())
            return False
        return bool(reply.ok)

    async def remove(self, pg_id: str) -> None:
        pg = self.t.pgs.get(pg_id)
        if pg is None or pg.state == "REMOVED":
            return
        was_created = pg.state == "CREATED"
        pg.state = "REMOVED"
        await self._save(pg)
        if was_created:  # the nodes give the bundles back in the background
            asyncio.ensure_future(self._release(pg))

    async def _release(self, pg: common_pb2.PlacementGroupInfo) -> None:
        for node_id in set(pg.bundle_node_ids):
            node = self.t.nodes.get(node_id)
            if node is not None and node.state == "ALIVE":
                await self._call(node, "CancelBundles", pg.pg_id, [])

    async def on_node_dead(self, node_id: str) -> None:
        """A group that lost a bundle is placed again from scratch."""
        for pg in list(self.t.pgs.values()):
            if pg.state == "CREATED" and node_id in pg.bundle_node_ids:
                await self._release(pg)
                pg.state = "PENDING"
                del pg.bundle_node_ids[:]
                await self._save(pg)
        self.wake()

    async def on_job_finished(self, job_id: str) -> None:
        for pg in list(self.t.pgs.values()):
            if pg.job_id == job_id and not pg.detached and pg.state != "REMOVED":
                await self.remove(pg.pg_id)

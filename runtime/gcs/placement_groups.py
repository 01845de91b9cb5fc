"""Placement groups, owned by the GCS: place the bundles (pg_placement), reserve them on every
node in two phases (prepare everywhere, then commit; any refusal cancels the prepared ones and the
group stays pending), release on removal, re-place when a node holding a bundle dies.

A group placed at once is written to Redis once, as CREATED; only one that must wait is written
as PENDING (that is the autoscaler's demand). A GCS that dies between a node's reservation and
that write leaves a bundle no table names: after a restart `reconcile` asks every node which
groups it holds and gives back those the tables do not place there."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from runtime.gcs.long_poll import wait_for_version
from runtime.gcs.pg_placement import place
from runtime.gcs.raylet_links import RayletCallError, RayletLinks
from runtime.gcs.tables import Tables
from runtime.protocol import common_pb2
from runtime.protocol.common_pb2 import NodeInfo, PlacementGroupInfo
from runtime.protocol.states import PlacementStrategy
from runtime.raylet.bundles import drop_group_resources, group_resources

log = logging.getLogger("rayctl.gcs.pg")

# Removed groups kept (in memory and Redis) so that late lookups still say "removed"; older ones
# are forgotten (as Ray's GCS caps its destroyed-group cache).
MAX_REMOVED_KEPT = 1000


class PlacementGroupManager:
    def __init__(self, tables: Tables, links: RayletLinks) -> None:
        self.t = tables
        self.links = links
        self._changed = asyncio.Condition()
        self._wake = asyncio.Event()
        self._placing: set[str] = set()
        ordered = sorted(tables.pgs.values(), key=lambda p: p.created_at)
        self.pending = {p.pg_id: p for p in ordered if p.state == PlacementGroupInfo.PENDING}
        self._removed = deque(p.pg_id for p in ordered if p.state == PlacementGroupInfo.REMOVED)

    def wake(self) -> None:
        self._wake.set()

    async def _save(self, pg: common_pb2.PlacementGroupInfo) -> None:
        """A new group: in Redis, then in memory, then its waiters hear of it."""
        await self.t.put_pg(pg)
        await self._saved(pg)

    @asynccontextmanager
    async def _changing(
        self, pg: common_pb2.PlacementGroupInfo
    ) -> AsyncIterator[common_pb2.PlacementGroupInfo]:
        """Change a known group: the draft reaches Redis, then `pg`, then its waiters."""
        async with self.t.edit(pg) as draft:
            yield draft
        await self._saved(pg)

    async def _saved(self, pg: common_pb2.PlacementGroupInfo) -> None:
        if pg.state == PlacementGroupInfo.PENDING:
            self.pending[pg.pg_id] = pg
        else:
            self.pending.pop(pg.pg_id, None)
        async with self._changed:
            self._changed.notify_all()

    async def create(self, pg: common_pb2.PlacementGroupInfo) -> tuple[common_pb2.PlacementGroupInfo, str]:
        if pg.strategy == PlacementGroupInfo.STRATEGY_UNSPECIFIED:
            return pg, "the placement group has no strategy: use PACK, SPREAD, STRICT_PACK or STRICT_SPREAD"
        existing = self.t.pgs.get(pg.pg_id)
        if existing is not None:  # a driver's retry after a lost reply
            return existing, ""
        if pg.name and any(p.name == pg.name and p.namespace == pg.namespace
                           and p.state != PlacementGroupInfo.REMOVED
                           for p in self.t.pgs.values()):
            return pg, f"a placement group named {pg.name!r} already exists"
        pg.state = PlacementGroupInfo.PENDING
        pg.created_at = time.time()
        self.t.pgs[pg.pg_id] = pg  # seen by lookups and removal while it is being placed
        try:
            await self._try_place(pg, announce=False)  # most groups fit at once: written once
            if pg.state == PlacementGroupInfo.PENDING:
                await self._save(pg)
                self.wake()
        except Exception:  # not recorded: the driver's retry (same id) starts afresh
            if self.t.pgs.get(pg.pg_id) is pg and pg.state == PlacementGroupInfo.PENDING:
                del self.t.pgs[pg.pg_id]
            raise
        return pg, ""

    async def get(self, pg_id: str, name: str, namespace: str, after_version: int,
                  timeout_s: float) -> common_pb2.PlacementGroupInfo | None:
        if not pg_id and name:
            pg_id = next((p.pg_id for p in self.t.pgs.values()
                          if p.name == name and p.namespace == namespace
                          and p.state != PlacementGroupInfo.REMOVED), "")
        return await wait_for_version(self._changed, lambda: self.t.pgs.get(pg_id), after_version, timeout_s)

    async def scheduler_loop(self) -> None:
        await self.reconcile()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except TimeoutError:
                pass
            self._wake.clear()
            for pg in sorted(self.pending.values(), key=lambda p: p.created_at):
                await self._try_place(pg, announce=True)

    async def _try_place(self, pg: common_pb2.PlacementGroupInfo, announce: bool) -> None:
        """Place a pending group once at a time (creation and the loop may both try)."""
        if pg.pg_id in self._placing or pg.state != PlacementGroupInfo.PENDING:
            return
        self._placing.add(pg.pg_id)
        try:
            await self._place(pg, announce)
        finally:
            self._placing.discard(pg.pg_id)

    async def _place(self, pg: common_pb2.PlacementGroupInfo, announce: bool) -> None:
        alive = {n.node_id: n for n in self.t.nodes.values() if n.state == NodeInfo.ALIVE}
        bundles = [dict(b.resources) for b in pg.bundles]
        strategy = PlacementStrategy.from_wire(pg.strategy)
        placement = place(bundles, strategy, {nid: dict(n.available) for nid, n in alive.items()})
        if placement is None:
            return
        by_node: dict[str, list[common_pb2.Bundle]] = {}
        for bundle, node_id in zip(pg.bundles, placement, strict=True):
            by_node.setdefault(node_id, []).append(bundle)
        one_node = len(by_node) == 1  # then prepare and commit are one call
        prepared = []
        for node_id, node_bundles in by_node.items():
            if await self._call(alive[node_id], "prepare_bundles", pg.pg_id, node_bundles, commit=one_node):
                prepared.append(node_id)
            else:
                for done in prepared:
                    await self._call(alive[done], "cancel_bundles", pg.pg_id, by_node[done])
                return
        for node_id, node_bundles in by_node.items():
            if not one_node:
                await self._call(alive[node_id], "commit_bundles", pg.pg_id, node_bundles)
            _view_commit(self.t, alive[node_id], pg.pg_id, node_bundles)
        if pg.state != PlacementGroupInfo.PENDING:  # removed meanwhile
            for node_id, node_bundles in by_node.items():
                await self._call(alive[node_id], "cancel_bundles", pg.pg_id, node_bundles)
                _view_release(self.t, alive[node_id], pg.pg_id, node_bundles)
            return
        try:
            async with self._changing(pg) as draft:
                draft.state = PlacementGroupInfo.CREATED
                del draft.bundle_node_ids[:]
                draft.bundle_node_ids.extend(placement)
        except Exception:  # not recorded (Redis down): the nodes must not keep what no row names
            for node_id, node_bundles in by_node.items():
                await self._call(alive[node_id], "cancel_bundles", pg.pg_id, node_bundles)
                _view_release(self.t, alive[node_id], pg.pg_id, node_bundles)
            raise
        if announce:  # a group that had to wait; the event log needs no wait
            asyncio.ensure_future(self.t.event(
                "placement_group_created", f"{pg.pg_id} ({strategy}) on {sorted(set(placement))}"))

    async def _call(self, node: common_pb2.NodeInfo, method: str, pg_id: str,
                    bundles: list[common_pb2.Bundle], commit: bool = False) -> bool:
        payload = {"pg_id": pg_id, "commit": commit,
                   "bundles": [(b.index, dict(b.resources)) for b in bundles]}
        try:
            error = await self.links.call(node, method, payload)
        except RayletCallError as exc:
            log.warning("placement group %s: %s", pg_id, exc)
            return False
        if error:
            log.info("placement group %s: node %s refused %s: %s", pg_id, node.node_id, method, error)
        return not error

    async def remove(self, pg_id: str) -> PlacementGroupInfo.State | None:
        """Remove a group; returns the state it had (None if unknown or removed already)."""
        pg = self.t.pgs.get(pg_id)
        if pg is None or pg.state == PlacementGroupInfo.REMOVED:
            return None
        state = pg.state
        was_created = state == PlacementGroupInfo.CREATED
        async with self._changing(pg) as draft:
            draft.state = PlacementGroupInfo.REMOVED
        if was_created:  # the nodes give the bundles back in the background
            asyncio.ensure_future(self._release(pg))
        self._removed.append(pg_id)
        if len(self._removed) > MAX_REMOVED_KEPT + MAX_REMOVED_KEPT // 10:  # forget in batches
            forget = [self._removed.popleft() for _ in range(len(self._removed) - MAX_REMOVED_KEPT)]
            await self.t.drop_pgs(forget)
        return state

    async def _release(self, pg: common_pb2.PlacementGroupInfo) -> None:
        for node_id in set(pg.bundle_node_ids):
            node = self.t.nodes.get(node_id)
            if node is not None and node.state != NodeInfo.DEAD:  # draining ones too
                await self._call(node, "cancel_bundles", pg.pg_id, [])
                _view_release(self.t, node, pg.pg_id,
                              [b for b, n in zip(pg.bundles, pg.bundle_node_ids, strict=True) if n == node_id])
        if self.pending:  # what was given back may be what a waiting group needs
            self.wake()

    async def reconcile(self) -> None:
        """Make every live node hold exactly the bundles the tables place there: give back groups
        a node holds that are not CREATED there (a GCS that died mid-placement), and place again
        a CREATED group a node does not hold. Runs once after a start; a group being placed
        meanwhile (a driver may create one at once) is left alone."""
        created = {p.pg_id: set(p.bundle_node_ids) for p in self.t.pgs.values()
                   if p.state == PlacementGroupInfo.CREATED}
        nodes = [n for n in self.t.nodes.values() if n.state != NodeInfo.DEAD]
        held = await asyncio.gather(*(self._held(n) for n in nodes))
        lost: set[str] = set()
        for node, groups in zip(nodes, held, strict=True):
            if groups is None:  # unreachable: the health check decides about this node
                continue
            expected = {pg_id for pg_id, where in created.items() if node.node_id in where}
            for pg_id in set(groups) - expected - self._placing:
                pg = self.t.pgs.get(pg_id)
                if pg is not None and pg.state == PlacementGroupInfo.CREATED and node.node_id in pg.bundle_node_ids:
                    continue  # placed while we asked
                log.info("node %s gives back bundles of %s, which it holds for no known group",
                         node.node_id, pg_id)
                await self._call(node, "cancel_bundles", pg_id, [])
            lost |= expected - set(groups)
        for pg_id in lost:
            pg = self.t.pgs.get(pg_id)
            if pg is not None and pg.state == PlacementGroupInfo.CREATED:  # not removed meanwhile
                await self._place_again(pg)
        self.wake()

    async def _held(self, node: common_pb2.NodeInfo) -> list[str] | None:
        try:
            return list(await self.links.call(node, "list_bundles", timeout_s=5))
        except RayletCallError as exc:
            log.warning("cannot list the bundles a node holds: %s", exc)
            return None

    async def _place_again(self, pg: common_pb2.PlacementGroupInfo) -> None:
        await self._release(pg)
        async with self._changing(pg) as draft:
            draft.state = PlacementGroupInfo.PENDING
            del draft.bundle_node_ids[:]

    async def on_node_dead(self, node_id: str) -> None:
        """A group that lost a bundle is placed again from scratch."""
        for pg in list(self.t.pgs.values()):
            if pg.state == PlacementGroupInfo.CREATED and node_id in pg.bundle_node_ids:
                await self._place_again(pg)
        self.wake()

    async def on_job_finished(self, job_id: str) -> None:
        for pg in list(self.t.pgs.values()):
            if pg.job_id == job_id and not pg.detached and pg.state != PlacementGroupInfo.REMOVED:
                await self.remove(pg.pg_id)


# The GCS's view of a node follows its bundles at once (as the raylet's own books do), so that
# the next view update tells every raylet where a new group's resources are without waiting for
# the holder's next report, which then brings the raylet's exact figures.


def _view_commit(t: Tables, node: common_pb2.NodeInfo, pg_id: str, bundles: list[common_pb2.Bundle]) -> None:
    t.on_node_changed(node.node_id)
    for b in bundles:
        for name, amount in b.resources.items():
            node.available[name] = node.available.get(name, 0.0) - amount
        for name, amount in group_resources(pg_id, b.index, b.resources).items():
            node.total[name] = node.total.get(name, 0.0) + amount
            node.available[name] = node.available.get(name, 0.0) + amount


def _view_release(t: Tables, node: common_pb2.NodeInfo, pg_id: str, bundles: list[common_pb2.Bundle]) -> None:
    t.on_node_changed(node.node_id)
    drop_group_resources(pg_id, node.total, node.available)
    for b in bundles:
        for name, amount in b.resources.items():
            node.available[name] = node.available.get(name, 0.0) + amount

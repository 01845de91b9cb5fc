"""The GCS's end of the node sync streams (service NodeSync in gcs.proto): one long-lived
bidirectional gRPC stream per raylet, instead of a unary heartbeat every quarter second.

In: a node's report when its resources, load, idle time or drain changed, else a ping after a
second of silence (runtime/raylet/gcs_link.py). Each is acknowledged at once. A change is applied
in memory at once and reaches Redis with the next write batch (every WRITE_BATCH_S, one pipeline
for every node that changed), so a report costs a stream read and a small write, not a Redis
round trip; a restarted GCS gets every node's state again from its first report.

Out: the cluster resource view the raylets spill by. The whole view when a stream opens, then,
each view period, the rows changed since the last one: serialized once and the same bytes sent to
every node. The period grows with the cluster so that the GCS sends about VIEW_SENDS_PER_S view
messages a second in all: 0.1 s up to 200 nodes, 1 s from 2,000.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from runtime.gcs import drain as gcs_drain
from runtime.gcs import schema
from runtime.gcs.tables import Tables
from runtime.protocol import gcs_pb2
from runtime.protocol.common_pb2 import NodeInfo

log = logging.getLogger("rayctl.gcs")

SERVICE = "rayctl.NodeSync"
METHOD = f"/{SERVICE}/Sync"
VIEW_PERIOD_MIN_S = 0.1
VIEW_PERIOD_MAX_S = 1.0
VIEW_SENDS_PER_S = 2000
WRITE_BATCH_S = 0.02
# view updates queued for a node that does not keep up, before it gets the whole view instead
OUTBOX_MAX = 4
VIEW_SLICE = 100  # streams handed an update at a time


@dataclass(eq=False)
class _Stream:
    node_id: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    ack: int = 0  # the last report taken and not yet acknowledged (0: none)
    outbox: deque[bytes] = field(default_factory=deque)
    view_version: int = -1  # the view version last queued for it (-1: it needs the whole view)
    unknown: bool = False  # tell the node to register again, then end the stream


def view_period_s(nodes: int) -> float:
    """How often the view goes out to `nodes` connected nodes."""
    return min(VIEW_PERIOD_MAX_S, max(VIEW_PERIOD_MIN_S, nodes / VIEW_SENDS_PER_S))


def view_row(node: NodeInfo) -> NodeInfo:
    """What a raylet needs of another node to spill to it and fetch from it."""
    return NodeInfo(node_id=node.node_id, address=node.address, raylet_port=node.raylet_port,
                    local_port=node.local_port, data_port=node.data_port, total=node.total,
                    available=node.available, state=node.state, node_type=node.node_type,
                    is_head=node.is_head, labels=node.labels)


class NodeSync:
    """`on_load(written)`: a node's queued demand changed (written=False: in memory, for the
    actor and group schedulers; written=True: now in Redis too, for the autoscaler)."""

    def __init__(self, tables: Tables, on_load: Callable[[bool], None]) -> None:
        self.t = tables
        self.on_load = on_load
        self.last_seen: dict[str, float] = {}  # node id -> monotonic time of its last message
        self.version = 0
        self._streams: dict[str, _Stream] = {}
        self._view_changed: set[str] = set()  # node ids whose whole row goes out next period
        self._available_changed: set[str] = set()  # node ids whose free resources alone changed
        self._sent_available: dict[str, dict[str, float]] = {}  # as the last period sent them
        self._unwritten: set[str] = set()  # node ids whose row Redis does not have yet
        self._unwritten_load: dict[str, str] = {}
        self._write_soon = asyncio.Event()
        self._full_view: tuple[int, bytes] | None = None
        tables.on_node_changed = self.node_changed

    def handler(self) -> grpc.GenericRpcHandler:
        """The service, registered by hand: its replies are bytes serialized once for all nodes."""
        method = grpc.stream_stream_rpc_method_handler(
            self.serve, request_deserializer=gcs_pb2.NodeReport.FromString, response_serializer=None
        )
        return grpc.method_handlers_generic_handler(SERVICE, {"Sync": method})

    def node_changed(self, node_id: str) -> None:
        """A node's row was written (joined, drains, died): the view shows it next period, and
        a whole view sent before then shows it already."""
        self._view_changed.add(node_id)
        self._full_view = None

    def forget(self, node_id: str) -> None:
        """The node died: drop its unwritten load (its DEAD row, written by whoever marked it,
        reaches the view through `node_changed`)."""
        self._unwritten_load.pop(node_id, None)

    @property
    def view_period_s(self) -> float:
        return view_period_s(len(self._streams))

    # -- one stream per node ---------------------------------------------------------------------
    async def serve(self, _requests: Any, context: grpc.aio.ServicerContext) -> None:
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        node_id = first.node_id
        node = self.t.nodes.get(node_id)
        if node is None or node.state == NodeInfo.DEAD:
            await context.write(gcs_pb2.ViewUpdate(unknown_node=True).SerializeToString())
            return
        stream = _Stream(node_id)
        previous = self._streams.get(node_id)
        if previous is not None:  # the node reconnected before its old stream was seen to end
            previous.wake.set()
        self._streams[node_id] = stream
        writer = asyncio.ensure_future(self._write_loop(stream, context))
        try:
            report = first
            while report is not grpc.aio.EOF:
                if not await self._take(stream, report):
                    stream.unknown = True
                    break
                report = await context.read()
        finally:
            if self._streams.get(node_id) is stream:
                del self._streams[node_id]
            stream.wake.set()
            await writer

    async def _write_loop(self, stream: _Stream, context: grpc.aio.ServicerContext) -> None:
        """The stream's only writer: acknowledgements and view updates, in order."""
        try:
            while True:
                await stream.wake.wait()
                stream.wake.clear()
                if stream.unknown:
                    await context.write(gcs_pb2.ViewUpdate(unknown_node=True).SerializeToString())
                    return
                if stream.ack:
                    ack, stream.ack = stream.ack, 0
                    await context.write(gcs_pb2.ViewUpdate(ack=ack).SerializeToString())
                if stream.view_version < 0:
                    stream.outbox.clear()
                    version, data = self._whole_view()
                    stream.view_version = version
                    await context.write(data)
                while stream.outbox:
                    await context.write(stream.outbox.popleft())
                if self._streams.get(stream.node_id) is not stream:
                    return
        except (asyncio.CancelledError, grpc.RpcError, RuntimeError, ValueError) as exc:  # closed
            log.debug("sync stream of node %s ended: %s", stream.node_id, exc)

    async def _take(self, stream: _Stream, report: gcs_pb2.NodeReport) -> bool:
        """Apply one report; False if the GCS no longer knows the node (it must register again)."""
        node = self.t.nodes.get(stream.node_id)
        if node is None or node.state == NodeInfo.DEAD:
            return False
        self.last_seen[stream.node_id] = time.monotonic()
        stream.ack = report.seq
        stream.wake.set()
        if report.ping:
            return True
        available = dict(report.available)
        free_changed = available != dict(node.available)
        changed = free_changed or report.idle_since != node.idle_since
        if free_changed:
            node.available.clear()
            node.available.update(available)
            self._available_changed.add(node.node_id)
        if report.total and dict(report.total) != dict(node.total):
            node.total.clear()
            node.total.update(report.total)
            changed = True
            self._view_changed.add(node.node_id)
        node.idle_since = report.idle_since
        draining = report.HasField("drain")
        starts_draining = draining and node.state != NodeInfo.DRAINING
        if draining and gcs_drain.take_progress(node, report.drain):
            changed = True
            self._view_changed.add(node.node_id)
        if changed:
            node.last_heartbeat = time.time()
            self._unwritten.add(node.node_id)
            self._write_soon.set()
        if report.load_changed:
            self._unwritten_load[node.node_id] = schema.encode_load(report.load)
            self._write_soon.set()
            self.on_load(False)
        if starts_draining:  # (normally DrainNode's reply got there first)
            await gcs_drain.announce(self.t, node)
        return True

    # -- the view --------------------------------------------------------------------------------
    def _whole_view(self) -> tuple[int, bytes]:
        """The view as of the last update (changes since then come with the next one)."""
        if self._full_view is None or self._full_view[0] != self.version:
            rows = []
            for node in self.t.nodes.values():
                if node.state == NodeInfo.DEAD:
                    continue
                row = view_row(node)
                sent = self._sent_available.get(node.node_id)
                if sent is not None and node.node_id not in self._view_changed:
                    row.available.clear()  # as sent: the next update's amounts apply to these
                    row.available.update(sent)
                rows.append(row)
            update = gcs_pb2.ViewUpdate(version=self.version, full=True, nodes=rows)
            self._full_view = (self.version, update.SerializeToString())
        return self._full_view

    async def view_loop(self) -> None:
        """Each view period: one update of what changed, for every stream; handed out over the
        period in slices, so that acknowledgements keep flowing between them."""
        while True:
            started = time.monotonic()
            period = self.view_period_s
            data = self._next_update()
            if data is not None:
                previous = self.version - 1
                streams = list(self._streams.values())
                slices = max(1, min(len(streams) // VIEW_SLICE, int(period / 0.01)))
                for i in range(slices):
                    for stream in streams[i::slices]:
                        if stream.view_version == previous and len(stream.outbox) < OUTBOX_MAX:
                            stream.outbox.append(data)
                            stream.view_version = self.version
                        elif stream.view_version != self.version:  # new, or behind: the whole view
                            stream.view_version = -1
                        stream.wake.set()
                    if i + 1 < slices:
                        await asyncio.sleep(period * 0.8 / slices)
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

    def _next_update(self) -> bytes | None:
        """The next version's update: whole rows for nodes that joined, died or changed shape;
        only the amounts that changed for nodes whose free resources alone did. None: nothing."""
        if not self._view_changed and not self._available_changed:
            return None
        whole, self._view_changed = self._view_changed, set()
        free, self._available_changed = self._available_changed - whole, set()
        rows = []
        for node_id in whole:
            node = self.t.nodes.get(node_id)
            if node is None:
                continue
            rows.append(view_row(node))
            if node.state == NodeInfo.DEAD:
                self._sent_available.pop(node_id, None)
            else:
                self._sent_available[node_id] = dict(node.available)
        amounts = []
        for node_id in free:
            node = self.t.nodes.get(node_id)
            if node is None or node.state == NodeInfo.DEAD:
                continue
            now = dict(node.available)
            before = self._sent_available.get(node_id)
            if before is None or before.keys() != now.keys():  # a resource came or went
                rows.append(view_row(node))
            else:
                changed = {k: v for k, v in now.items() if before[k] != v}
                if not changed:
                    continue
                amounts.append(gcs_pb2.NodeAvailable(node_id=node_id, changed=changed))
            self._sent_available[node_id] = now
        if not rows and not amounts:
            return None
        self.version += 1
        return gcs_pb2.ViewUpdate(version=self.version, nodes=rows, available=amounts).SerializeToString()

    # -- Redis -----------------------------------------------------------------------------------
    async def write_loop(self) -> None:
        """Write the rows and loads reports changed, in one pipeline per batch."""
        while True:
            await self._write_soon.wait()
            await asyncio.sleep(WRITE_BATCH_S)
            self._write_soon.clear()
            rows, self._unwritten = self._unwritten, set()
            loads, self._unwritten_load = self._unwritten_load, {}
            live = [self.t.nodes[i] for i in rows if i in self.t.nodes and self.t.nodes[i].state != NodeInfo.DEAD]
            loads = {i: v for i, v in loads.items()
                     if i in self.t.nodes and self.t.nodes[i].state != NodeInfo.DEAD}
            try:
                await self.t.put_nodes_and_loads(live, loads)
            except Exception:  # Redis is down: keep them for the next batch
                self._unwritten |= {n.node_id for n in live}
                self._unwritten_load = {**loads, **self._unwritten_load}
                self._write_soon.set()
                raise
            if loads:
                self.on_load(True)

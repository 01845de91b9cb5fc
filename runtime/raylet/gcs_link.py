"""What a raylet tells the GCS: its registration, and over its sync stream the reports of its
resources, idle time, load (the autoscaler's demand) and drain progress; the stream brings back
the cluster view it spills by."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import grpc

from runtime.constants import (
    NODE_PING_S,
    NODE_REPORT_CHECK_S,
    PROTOCOL_VERSION,
    PYTHON_VERSION,
    RAYCTL_VERSION,
)
from runtime.protocol import common_pb2, gcs_pb2
from runtime.raylet import drain

if TYPE_CHECKING:
    from runtime.raylet.server import Raylet

log = logging.getLogger("rayctl.raylet")

# A stream on which nothing came back for this many ping intervals (each ping is acknowledged)
# is dropped and opened again.
SILENT_PINGS = 3


def node_info(r: Raylet) -> common_pb2.NodeInfo:
    """This node as the GCS records it (also when it registers again, draining)."""
    progress = drain.progress(r)
    return common_pb2.NodeInfo(
        node_id=r.node_id,
        address=r.host,
        raylet_port=r.args.grpc_port_bound,
        local_port=r.args.local_port_bound,
        data_port=r.args.data_port_bound,
        shm_dir=r.shm_dir,
        total=r.total,
        available=r.available,
        state=common_pb2.NodeInfo.ALIVE if progress is None else common_pb2.NodeInfo.DRAINING,
        drain=progress,
        instance_id=os.environ.get("RAYCTL_INSTANCE_ID", ""),
        node_type=os.environ.get("RAYCTL_NODE_TYPE", ""),
        is_head=r.args.head,
        versions=common_pb2.Versions(
            python=PYTHON_VERSION, rayctl=RAYCTL_VERSION, protocol=PROTOCOL_VERSION
        ),
    )

async def register(r: Raylet) -> None:
    """Join the GCS (again after it forgot us); a refusal or 30 s without an answer ends the raylet."""
    assert r.gcs is not None
    deadline = time.monotonic() + 30
    while True:
        try:
            reply = await r.gcs.RegisterNode(
                gcs_pb2.RegisterNodeRequest(node=node_info(r)), timeout=5
            )
            r.ping_s = reply.ping_s or NODE_PING_S  # (a GCS of this protocol always says)
            return
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.FAILED_PRECONDITION,
            ):
                raise SystemExit(f"the GCS refused this node: {exc.details()}") from None
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"cannot reach the GCS at {r.args.gcs_address}: {exc.details()}"
                ) from None
            await asyncio.sleep(0.02)

async def sync_loop(r: Raylet) -> bool:
    """Keep this node's sync stream to the GCS open (runtime/gcs/node_sync.py): reports go out,
    acknowledgements and the cluster view come back. Returns True when it stopped the node
    because the GCS stayed unreachable for `--gcs-lost-timeout-s` (a shorter gap, a GCS or Redis
    restart, only reopens the stream)."""
    assert r.gcs_sync is not None
    heard = [time.monotonic()]  # when the GCS last answered
    retry_s = 0.05
    while not r.stopping.is_set():
        try:
            call = await asyncio.wait_for(r.gcs_sync.Sync.open(), SILENT_PINGS * r.ping_s)
        except (grpc.aio.AioRpcError, TimeoutError):
            call = None
        if call is not None:
            try:
                await _session(r, call, heard)
                retry_s = 0.05
            except (grpc.aio.AioRpcError, TimeoutError, asyncio.InvalidStateError):
                pass
            finally:
                call.cancel()
        if r.stopping.is_set():
            break
        if time.monotonic() - heard[0] > r.args.gcs_lost_timeout_s:
            log.error("GCS unreachable for %.0fs: stopping this node", r.args.gcs_lost_timeout_s)
            r.stopping.set()
            return True
        try:
            await asyncio.wait_for(r.stopping.wait(), retry_s)
        except TimeoutError:
            pass
        retry_s = min(retry_s * 2, 1.0)
    return False


async def _session(r: Raylet, call: Any, heard: list[float]) -> None:
    """One stream, until it ends: view updates applied, reports sent by `_report`."""
    sender = asyncio.ensure_future(_report(r, call))
    try:
        while not r.stopping.is_set():
            update = await asyncio.wait_for(call.read(), SILENT_PINGS * r.ping_s)
            if update is grpc.aio.EOF:
                return
            heard[0] = time.monotonic()
            if update.unknown_node:
                await register(r)
                return  # a new stream; its first report carries the load again
            if not update.ack:
                r.view.apply(update)
                r.dispatch()
            if sender.done():
                sender.result()  # the write failed: raise why
                return
    finally:
        sender.cancel()


async def _report(r: Raylet, call: Any) -> None:
    """A report when anything the GCS keeps changed (a load change at once, after a 10 ms
    batch; the rest at the next check), else a ping after `r.ping_s` of silence."""
    seq = 0
    last: tuple[Any, ...] | None = None
    sent_at = 0.0
    while True:
        load_changed = r.load_changed or last is None
        r.load_changed = False
        progress = drain.progress(r)
        state = (dict(r.available), dict(r.total), r.idle_since,
                 progress.SerializeToString() if progress is not None else None)
        now = time.monotonic()
        report = None
        if load_changed or state != last:
            seq += 1
            report = gcs_pb2.NodeReport(
                node_id=r.node_id, seq=seq, available=r.available, total=r.total,
                idle_since=r.idle_since, load_changed=load_changed,
                load=r.load() if load_changed else [], drain=progress,
            )
            last = state
        elif now - sent_at >= r.ping_s:
            seq += 1
            report = gcs_pb2.NodeReport(node_id=r.node_id, seq=seq, ping=True)
        if report is not None:
            try:
                await call.write(report)
            except BaseException:
                r.load_changed = r.load_changed or load_changed  # told again on the next stream
                raise
            sent_at = now
        try:
            await asyncio.wait_for(r._beat_now.wait(), NODE_REPORT_CHECK_S)
            await asyncio.sleep(0.01)  # batch a burst of changes into one report
        except TimeoutError:
            pass
        r._beat_now.clear()

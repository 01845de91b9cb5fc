"""What a raylet tells the GCS: its registration, and the heartbeat that carries its resources,
idle time, load (the autoscaler's demand) and drain progress, and brings back the cluster view it
spills by."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

import grpc

from runtime.constants import HEARTBEAT_INTERVAL_S, PROTOCOL_VERSION, PYTHON_VERSION, RAYCTL_VERSION
from runtime.protocol import common_pb2, gcs_pb2
from runtime.raylet import drain

if TYPE_CHECKING:
    from runtime.raylet.server import Raylet

log = logging.getLogger("rayctl.raylet")


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
            await r.gcs.RegisterNode(
                gcs_pb2.RegisterNodeRequest(node=node_info(r)), timeout=5
            )
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

async def heartbeat_loop(r: Raylet) -> bool:
    """Report resources, idle time and (when it changed) the load; take the cluster view back.
    A load change is reported at once (after a 10 ms batch), else every HEARTBEAT_INTERVAL_S.
    Returns True when it stopped the node because the GCS stayed unreachable for
    `--gcs-lost-timeout-s` (a gap shorter than that, a GCS or Redis restart, changes nothing)."""
    assert r.gcs is not None
    last_ok = time.monotonic()
    while not r.stopping.is_set():
        changed = r.load_changed
        r.load_changed = False
        req = gcs_pb2.HeartbeatRequest(
            total=r.total,
            node_id=r.node_id,
            available=r.available,
            load=r.load() if changed else [],
            idle_since=r.idle_since,
            load_changed=changed,
            drain=drain.progress(r),
        )
        try:
            reply = await r.gcs.Heartbeat(req, timeout=2)
            last_ok = time.monotonic()
            if reply.unknown_node:
                await register(r)
                r.mark_load_changed()
            else:
                r.cluster_view = list(reply.nodes)
                r.dispatch()
        except grpc.aio.AioRpcError:
            r.load_changed = r.load_changed or changed
            if time.monotonic() - last_ok > r.args.gcs_lost_timeout_s:
                log.error(
                    "GCS unreachable for %.0fs: stopping this node",
                    r.args.gcs_lost_timeout_s,
                )
                r.stopping.set()
                return True
        try:
            await asyncio.wait_for(r._beat_now.wait(), HEARTBEAT_INTERVAL_S)
            await asyncio.sleep(0.01)  # batch a burst of changes into one report
        except TimeoutError:
            pass
        r._beat_now.clear()
    return False

"""The raylet process: its gRPC service (called by the GCS and other raylets) and start-up.
Run as `python -m runtime.raylet.main`; the node logic lives in runtime/raylet/server.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from dataclasses import dataclass
from typing import Any

import grpc

from runtime.auth import read_credentials
from runtime.grpc_auth import ProofServerInterceptor, add_port, open_aio_channel
from runtime.leftovers import reclaim_dead_raylets_here
from runtime.listener_caps import GRPC_SERVER_OPTIONS
from runtime.log_rotation import rotate_own_output
from runtime.protocol import gcs_pb2, gcs_pb2_grpc, raylet_pb2, raylet_pb2_grpc
from runtime.raylet import oom, owner_death
from runtime.raylet.gcs_link import node_info, register, sync_loop
from runtime.raylet.head_loss import end_machine
from runtime.raylet.logs import list_logs, read_tail
from runtime.raylet.server import Raylet, log
from runtime.raylet.worker_pool import WorkerPool
from runtime.session import record_pid, watch_parent
from runtime.transport import serve

LIST_OBJECTS_LIMIT = 10_000  # objects one ListObjects reply names at most (~70 bytes each)


@dataclass(frozen=True, slots=True)
class _Servers:
    local: asyncio.AbstractServer
    grpc: grpc.aio.Server
    data: asyncio.AbstractServer


class RayletServicer(raylet_pb2_grpc.RayletServicer):
    def __init__(self, raylet: Raylet) -> None:
        self.r = raylet

    async def StartActor(self, request: Any, context: Any) -> Any:
        return await self.r.start_actor(request.actor)

    async def KillActorWorker(self, request: Any, context: Any) -> Any:
        self.r.kill_actor_worker(request.actor_id)
        return raylet_pb2.RayletEmpty()

    async def GetNodeStats(self, request: Any, context: Any) -> Any:
        assert self.r.pool is not None
        stats = self.r.store.stats()
        return raylet_pb2.NodeStatsReply(
            node=node_info(self.r),
            num_workers=len(self.r.pool.workers),
            num_idle_workers=len(self.r.pool.idle),
            object_store_used=stats.used_bytes,
            object_store_capacity=stats.capacity_bytes,
            load=self.r.load(),
            transfer_bytes_received=self.r.transfer.bytes_received,
            transfer_bytes_sent=self.r.transfer.bytes_sent,
            queued_leases=sum(not req.future.done() for req in self.r.queue),
        )

    async def ListObjects(self, request: Any, context: Any) -> Any:
        limit = request.limit if request.limit > 0 else LIST_OBJECTS_LIMIT
        copies = self.r.store.listing(min(limit, LIST_OBJECTS_LIMIT))
        return raylet_pb2.ListObjectsReply(
            objects=[raylet_pb2.StoredObject(object_id=c.object_id, size=c.size, primary=c.primary,
                                             in_memory=c.in_memory, spilled=c.spilled, pins=c.pins)
                     for c in copies],
            total=self.r.store.stats().num_objects)

    async def ListLogs(self, request: Any, context: Any) -> Any:
        files = await asyncio.to_thread(list_logs, self.r.log_dir)
        return raylet_pb2.ListLogsReply(
            files=[raylet_pb2.LogFile(name=name, size=size) for name, size in files])

    async def ReadLog(self, request: Any, context: Any) -> Any:
        data = await asyncio.to_thread(read_tail, self.r.log_dir, request.name, request.tail)
        return raylet_pb2.ReadLogReply(found=data is not None, data=data or b"")

    async def FreeObjects(self, request: Any, context: Any) -> Any:
        self.r.delete_copies(list(request.object_ids))
        return raylet_pb2.RayletEmpty()

    async def DrainNode(self, request: Any, context: Any) -> Any:
        return await self.r.request_drain(request)

    async def Shutdown(self, request: Any, context: Any) -> Any:
        self.r.stopping.set()
        return raylet_pb2.RayletEmpty()


async def run(args: argparse.Namespace) -> None:
    """Start the node's services, join the cluster, serve until told to stop, then leave it."""
    credentials = read_credentials(args.token_file)
    reclaim_dead_raylets_here(args.session_dir, args.node_id)
    raylet = Raylet(args, credentials)
    raylet.store.abort_partial()  # .tmp files of writers killed mid-put
    servers = await _start_servers(raylet, args)
    raylet.pool = _worker_pool(raylet, args)
    for _ in range(args.prestart):
        await raylet.pool.start_worker()
    gcs_channel = open_aio_channel(args.gcs_address, credentials.token, tls=credentials.tls)
    raylet.gcs = gcs_pb2_grpc.GcsStub(gcs_channel)
    raylet.gcs_sync = gcs_pb2_grpc.NodeSyncStub(gcs_channel)
    await register(raylet)
    if args.ready_file:
        _write_ready_file(raylet, args)
    log.info(
        "raylet %s up: local %d, grpc %d, resources %s",
        raylet.node_id,
        args.local_port_bound,
        args.grpc_port_bound,
        raylet.total,
    )
    sync = asyncio.ensure_future(sync_loop(raylet))
    asyncio.ensure_future(owner_death.sweep_remote_owners(raylet))
    asyncio.ensure_future(oom.make_guard(raylet, args.memory_guard).run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, raylet.stopping.set)
    if args.parent_pid:
        asyncio.ensure_future(watch_parent(args.parent_pid, raylet.stopping.set))
    await raylet.stopping.wait()
    await _leave(raylet, servers, sync)
    head_lost = sync.done() and not sync.cancelled() and sync.result()
    if head_lost and args.end_machine_command:
        end_machine(args.end_machine_command, os.path.join(args.session_dir, "logs"))


async def _start_servers(raylet: Raylet, args: argparse.Namespace) -> _Servers:
    """The node-local transport (drivers, workers, the GCS's bundle calls), the gRPC service and
    the data plane; their bound ports go on `args` (`*_port_bound`)."""
    local_server = await serve(args.host, args.local_port, raylet.token, raylet.handle,
                               tls=raylet.tls)
    args.local_port_bound = local_server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    server = grpc.aio.server(interceptors=[ProofServerInterceptor(raylet.token)], options=GRPC_SERVER_OPTIONS)
    raylet_pb2_grpc.add_RayletServicer_to_server(RayletServicer(raylet), server)
    args.grpc_port_bound = add_port(server, f"{args.host}:{args.port}", raylet.tls)
    data_server = await raylet.transfer.serve(args.host, 0)
    args.data_port_bound = data_server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    await server.start()
    return _Servers(local_server, server, data_server)


def _worker_pool(raylet: Raylet, args: argparse.Namespace) -> WorkerPool:
    return WorkerPool(
        node_id=raylet.node_id,
        local_port=args.local_port_bound,
        host=args.host,
        token_file=args.token_file,
        log_dir=os.path.join(args.session_dir, "logs"),
        shm_dir=raylet.shm_dir,
        gcs_address=args.gcs_address,
        session_dir=args.session_dir,
        on_death=raylet.on_worker_death,
        record_pid=lambda name, pid: record_pid(args.session_dir, f"{name}", pid),
    )


def _write_ready_file(raylet: Raylet, args: argparse.Namespace) -> None:
    """Tell whoever started us (runtime.node) where we listen, atomically (write, rename)."""
    with open(args.ready_file + ".tmp", "w") as f:
        json.dump(
            {
                "node_id": raylet.node_id,
                "local_port": args.local_port_bound,
                "grpc_port": args.grpc_port_bound,
                "shm_dir": raylet.shm_dir,
            },
            f,
        )
    os.rename(args.ready_file + ".tmp", args.ready_file)


async def _leave(raylet: Raylet, servers: _Servers, heartbeats: asyncio.Future[bool]) -> None:
    """Refuse queued work, leave the GCS, stop the workers and servers, remove the store."""
    assert raylet.pool is not None and raylet.gcs is not None
    raylet.reject_queued(f"node {raylet.node_id} is stopping")
    await asyncio.sleep(0)  # let those replies go out
    heartbeats.cancel()
    try:
        await raylet.gcs.UnregisterNode(
            gcs_pb2.NodeIdRequest(node_id=raylet.node_id, reason="node stopped"),
            timeout=1,
        )
    except grpc.aio.AioRpcError:
        pass
    await raylet.pool.shutdown()
    servers.local.close()
    servers.data.close()
    await servers.grpc.stop(0.2)
    raylet.store.close()


def main() -> None:
    p = argparse.ArgumentParser(description="rayctl raylet")
    p.add_argument("--node-id", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--local-port", type=int, default=0)
    p.add_argument("--gcs-address", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--resources", required=True, help="JSON map of resource totals")
    p.add_argument("--object-store-memory", type=int, required=True)
    p.add_argument("--spill-capacity-bytes", type=int, default=None, help="default: half the disk's free space")
    p.add_argument("--session-dir", required=True)
    p.add_argument("--shm-root", required=True)
    p.add_argument("--prestart", type=int, default=0)
    p.add_argument("--head", action="store_true")
    p.add_argument("--parent-pid", type=int, default=0, help="stop when this process exits")
    p.add_argument("--ready-file", default="")
    p.add_argument("--gcs-lost-timeout-s", type=float, default=60.0)
    p.add_argument("--end-machine-command", default="",
                   help="shell command run after the node stopped for a lost GCS")
    args = p.parse_args()
    try:
        args.memory_guard = oom.settings_from_env()
    except ValueError as exc:
        raise SystemExit(f"the raylet cannot start: {exc}") from None
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    rotate_own_output()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

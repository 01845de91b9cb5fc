"""The GCS process: a gRPC service over the Redis-backed tables. Nodes, health, jobs, KV, demand,
actors (it places and restarts them). Run as `python -m runtime.gcs.server`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from typing import Any

import grpc
import redis.asyncio as aioredis

from runtime import ids
from runtime.auth import Credentials, read_credentials
from runtime.constants import NODE_DEATH_TIMEOUT_S, NODE_PING_S, PINGS_PER_DEATH_TIMEOUT
from runtime.gcs import drain as gcs_drain
from runtime.gcs import schema
from runtime.gcs.actors import ActorManager
from runtime.gcs.node_sync import NodeSync
from runtime.gcs.placement_groups import PlacementGroupManager
from runtime.gcs.raylet_links import RayletLinks
from runtime.gcs.schema import KvKey, KvNamespace
from runtime.gcs.store_errors import StoreErrorInterceptor, keep_running
from runtime.gcs.tables import SchemaMismatchError, Tables
from runtime.gcs.task_events import TaskEventStore
from runtime.grpc_auth import ProofServerInterceptor, add_port
from runtime.listener_caps import GRPC_SERVER_OPTIONS
from runtime.log_rotation import rotate_own_output
from runtime.protocol import common_pb2, gcs_pb2, gcs_pb2_grpc
from runtime.protocol.common_pb2 import NodeInfo, PlacementGroupInfo
from runtime.resources import fits
from runtime.session import watch_parent
from runtime.transport import version_mismatch

log = logging.getLogger("rayctl.gcs")

REDIS_CONNECTIONS = 64
REDIS_WAIT_S = 10.0  # a request waiting this long for a Redis connection fails (store outage)


def _versions_problem(v: common_pb2.Versions, what: str) -> str | None:
    return version_mismatch({"python": v.python, "rayctl": v.rayctl, "protocol": v.protocol}, what)


class GcsServicer(gcs_pb2_grpc.GcsServicer):
    def __init__(
        self, tables: Tables, credentials: Credentials, cluster_id: str, session_dir: str,
        death_timeout_s: float
    ) -> None:
        self.t = tables
        self.token = credentials.token
        self.cluster_id = cluster_id
        self.session_dir = session_dir
        self.death_timeout_s = death_timeout_s
        self.ping_s = min(NODE_PING_S, death_timeout_s / PINGS_PER_DEATH_TIMEOUT)
        self.actors = ActorManager(tables, credentials)
        self.pgs = PlacementGroupManager(tables, RayletLinks(credentials))
        self.sync = NodeSync(tables, self._on_load)
        self.task_events = TaskEventStore()
        self._demand_dirty = asyncio.Event()

    def _on_load(self, written: bool) -> None:
        """A node's queued demand changed: placement may proceed now; the autoscaler is told once
        the new load is in Redis."""
        if written:
            self._demand_dirty.set()
        else:
            self.actors.wake()
            self.pgs.wake()

    # -- nodes -------------------------------------------------------------------------------
    async def RegisterNode(self, request: Any, context: Any) -> Any:
        node = request.node
        problem = _versions_problem(node.versions, "the GCS")
        if problem:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, problem)
        # a node that registers again (the GCS lost it) may be draining already
        node.state = NodeInfo.DRAINING if node.HasField("drain") else NodeInfo.ALIVE
        node.last_heartbeat = time.time()
        await self.t.put_node(node)
        self.sync.last_seen[node.node_id] = time.monotonic()
        await self.t.publish_node(node)
        await self.t.event(
            "node_added", f"node {node.node_id} at {node.address} joined with {dict(node.total)}"
        )
        log.info("node %s registered at %s", node.node_id, node.address)
        self.actors.wake()
        self.pgs.wake()
        return gcs_pb2.RegisterNodeReply(cluster_id=self.cluster_id, session_dir=self.session_dir,
                                         ping_s=self.ping_s)

    async def GetNodes(self, request: Any, context: Any) -> Any:
        return gcs_pb2.GetNodesReply(nodes=list(self.t.nodes.values()))

    async def UnregisterNode(self, request: Any, context: Any) -> Any:
        await self._mark_dead(request.node_id, request.reason or "node stopped")
        return gcs_pb2.Empty()

    async def _mark_dead(self, node_id: str, reason: str) -> None:
        node = self.t.nodes.get(node_id)
        if node is None or node.state == NodeInfo.DEAD:
            return
        async with self.t.edit(node) as dead:
            dead.state = NodeInfo.DEAD
            dead.death_reason = reason
            dead.available.clear()
        self.sync.forget(node_id)
        await self.t.drop_load(node_id)
        await self.t.event("node_dead", f"node {node_id}: {reason}")
        await self.t.publish_node(node)
        log.warning("node %s is dead: %s", node_id, reason)
        self._demand_dirty.set()
        await self.actors.on_node_dead(node_id, reason)
        await self.pgs.on_node_dead(node_id)

    async def health_loop(self) -> None:
        """Declare nodes dead after `death_timeout_s` without a report or ping."""
        start = time.monotonic()
        while True:
            await asyncio.sleep(min(0.5, self.death_timeout_s / 4))
            now = time.monotonic()
            for node_id, node in list(self.t.nodes.items()):
                if node.state == NodeInfo.DEAD:
                    continue
                # after a GCS restart, every node gets a full timeout to re-appear
                seen = self.sync.last_seen.get(node_id, start)
                if now - seen > self.death_timeout_s:
                    await self._mark_dead(node_id, f"no heartbeat (report or ping) for {now - seen:.1f}s")

    async def demand_loop(self) -> None:
        """Publish a debounced demand-change notice (at most every 20 ms)."""
        while True:
            await self._demand_dirty.wait()
            await asyncio.sleep(0.02)
            self._demand_dirty.clear()
            await self.t.notify_demand_changed()

    # -- KV ------------------------------------------------------------------------------------
    async def KvPut(self, request: Any, context: Any) -> Any:
        key = self.t.keys.kv(request.ns)
        if request.ns == KvNamespace.AUTOSCALER:  # e.g. request_resources: new demand for the monitor
            self._demand_dirty.set()
        if request.overwrite:
            await self.t.r.hset(key, request.key, request.value)
            return gcs_pb2.KvReply(written=True)
        written = await self.t.r.hsetnx(key, request.key, request.value)
        return gcs_pb2.KvReply(written=bool(written))

    async def KvGet(self, request: Any, context: Any) -> Any:
        value = await self.t.r.hget(self.t.keys.kv(request.ns), request.key)
        if isinstance(value, str):
            value = value.encode()
        return gcs_pb2.KvReply(found=value is not None, value=value or b"")

    async def KvDel(self, request: Any, context: Any) -> Any:
        n = await self.t.r.hdel(self.t.keys.kv(request.ns), request.key)
        return gcs_pb2.KvReply(found=bool(n))

    async def KvKeys(self, request: Any, context: Any) -> Any:
        keys = await self.t.r.hkeys(self.t.keys.kv(request.ns))
        names = [k.decode() if isinstance(k, bytes) else k for k in keys]
        return gcs_pb2.KvReply(keys=[k for k in names if k.startswith(request.key)])

    # -- jobs ----------------------------------------------------------------------------------
    async def RegisterJob(self, request: Any, context: Any) -> Any:
        problem = _versions_problem(request.versions, "the cluster")
        if problem:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, problem)
        job_id = ids.random_id(4)
        await self.t.put_job(
            job_id,
            {
                "driver_address": request.driver_address,
                "driver_pid": request.driver_pid,
                "namespace": request.namespace,
                "start": time.time(),
                "end": None,
                "submission_id": request.submission_id,
            },
        )
        return gcs_pb2.RegisterJobReply(job_id=job_id, cluster_id=self.cluster_id)

    async def FinishJob(self, request: Any, context: Any) -> Any:
        job = self.t.jobs.get(request.job_id)
        if job is not None and job.get("end") is None:
            await self.t.put_job(request.job_id, {**job, "end": time.time()})
            await self.actors.on_job_finished(request.job_id)
            await self.pgs.on_job_finished(request.job_id)
        return gcs_pb2.Empty()

    # -- actors --------------------------------------------------------------------------------
    async def CreateActor(self, request: Any, context: Any) -> Any:
        actor, error = await self.actors.create(request.actor)
        return gcs_pb2.CreateActorReply(actor=actor, error=error)

    async def GetActor(self, request: Any, context: Any) -> Any:
        actor = await self.actors.get(
            request.actor_id,
            request.name,
            request.namespace,
            request.after_version,
            request.timeout_s,
        )
        return gcs_pb2.GetActorReply(found=actor is not None, actor=actor)

    async def KillActor(self, request: Any, context: Any) -> Any:
        await self.actors.kill(request.actor_id, request.no_restart)
        return gcs_pb2.Empty()

    async def ReportActorDied(self, request: Any, context: Any) -> Any:
        await self.actors.on_actor_died(request.actor_id, request.reason, request.worker_address)
        return gcs_pb2.Empty()

    # -- placement groups ------------------------------------------------------------------------
    async def CreatePlacementGroup(self, request: Any, context: Any) -> Any:
        pg, error = await self.pgs.create(request.pg)
        if pg.state == PlacementGroupInfo.PENDING:  # a group placed at once is no demand
            self._demand_dirty.set()
        return gcs_pb2.CreatePlacementGroupReply(pg=pg, error=error)

    async def GetPlacementGroup(self, request: Any, context: Any) -> Any:
        pg = await self.pgs.get(request.pg_id, request.name, request.namespace, request.after_version,
                                request.timeout_s)
        return gcs_pb2.GetPlacementGroupReply(found=pg is not None, pg=pg)

    async def ListPlacementGroups(self, request: Any, context: Any) -> Any:
        return gcs_pb2.ListPlacementGroupsReply(pgs=list(self.t.pgs.values()))

    async def RemovePlacementGroup(self, request: Any, context: Any) -> Any:
        if await self.pgs.remove(request.pg_id) == PlacementGroupInfo.PENDING:
            self._demand_dirty.set()
        return gcs_pb2.Empty()

    # -- draining ------------------------------------------------------------------------------
    async def DrainNode(self, request: Any, context: Any) -> Any:
        """Accepted or rejected at once; an accepted node drains in the background."""
        return await gcs_drain.drain_node(self.t, request, self.actors.raylet)

    # -- feasibility ---------------------------------------------------------------------------
    async def CheckFeasible(self, request: Any, context: Any) -> Any:
        shape = dict(request.shape)
        alive = [n for n in self.t.nodes.values() if n.state == NodeInfo.ALIVE]
        fits_now = any(fits(shape, dict(n.available)) for n in alive)
        fits_node = any(fits(shape, dict(n.total)) for n in alive)
        raw = await self.t.r.hget(self.t.keys.kv(KvNamespace.AUTOSCALER), KvKey.LAUNCHABLE_NODE_TYPES)
        launchable = schema.decode_launchable(raw)
        fits_type = any(fits(shape, res) for res in launchable.values())
        return gcs_pb2.FeasibleReply(
            fits_now=fits_now, fits_a_node=fits_node, fits_launchable=fits_type
        )

    # -- task events ---------------------------------------------------------------------------
    async def AddTaskEvents(self, request: Any, context: Any) -> Any:
        self.task_events.add(request)
        return gcs_pb2.Empty()

    async def ListTasks(self, request: Any, context: Any) -> Any:
        if request.summarize:
            return self.task_events.summarize()
        return self.task_events.list(request.limit)


async def serve(args: argparse.Namespace) -> None:
    credentials = read_credentials(args.token_file)
    token = credentials.token
    # Requests beyond the pool's connections wait for one (redis-py's default pool refuses them
    # past 100: 2,000 nodes registering at once failed with "Too many connections").
    pool = aioredis.BlockingConnectionPool(host=args.redis_host, port=args.redis_port, password=token,
                                           max_connections=REDIS_CONNECTIONS, timeout=REDIS_WAIT_S)
    client = aioredis.Redis(connection_pool=pool)
    for _ in range(500):
        try:
            await client.ping()
            break
        except Exception:  # noqa: BLE001 - redis may still be starting
            await asyncio.sleep(0.01)
    tables = Tables(client, args.cluster_id)
    try:
        await tables.load()
    except SchemaMismatchError as exc:
        await client.aclose()
        await pool.disconnect()
        raise SystemExit(f"the GCS cannot start: {exc}") from None
    servicer = GcsServicer(tables, credentials, args.cluster_id, args.session_dir, args.death_timeout_s)
    server = grpc.aio.server(
        interceptors=[ProofServerInterceptor(token, cluster_id=args.cluster_id), StoreErrorInterceptor()], options=GRPC_SERVER_OPTIONS
    )
    gcs_pb2_grpc.add_GcsServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers((servicer.sync.handler(),))
    port = add_port(server, f"{args.host}:{args.port}", credentials.tls)
    await server.start()
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as f:
            f.write(str(port))
        os.rename(args.ready_file + ".tmp", args.ready_file)
    log.info("GCS listening on %s:%d (cluster %s)", args.host, port, args.cluster_id)
    loops = {"health": servicer.health_loop, "demand": servicer.demand_loop,
             "view": servicer.sync.view_loop, "node writes": servicer.sync.write_loop,
             "actor placement": servicer.actors.scheduler_loop,
             "placement group": servicer.pgs.scheduler_loop}
    background = [asyncio.ensure_future(keep_running(name, loop)) for name, loop in loops.items()]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.parent_pid:
        background.append(asyncio.ensure_future(watch_parent(args.parent_pid, stop.set)))
    await stop.wait()
    for task in background:
        task.cancel()
    await server.stop(0.5)
    servicer.pgs.links.close()
    await client.aclose()
    await pool.disconnect()
    if args.owned_redis_pid:
        try:
            os.kill(args.owned_redis_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def main() -> None:
    p = argparse.ArgumentParser(description="rayctl global control store")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--redis-host", default="127.0.0.1")
    p.add_argument("--redis-port", type=int, required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--cluster-id", required=True)
    p.add_argument("--session-dir", required=True)
    p.add_argument("--ready-file", default="")
    p.add_argument("--parent-pid", type=int, default=0, help="stop when this process exits")
    p.add_argument("--owned-redis-pid", type=int, default=0, help="stop this Redis on exit")
    p.add_argument("--death-timeout-s", type=float, default=NODE_DEATH_TIMEOUT_S)
    args = p.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    rotate_own_output()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()

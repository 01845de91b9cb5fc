"""The raylet: one per node. Owns the node's resources, its worker pool, its object store; grants
worker leases to drivers and workers over the node-local transport; serves the GCS over gRPC;
reports resources and queued demand to the GCS a few times a second (runtime/raylet/gcs_link.py).
The process entry point and gRPC service are in runtime/raylet/main.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import grpc

from runtime import ids, shm
from runtime.auth import Credentials
from runtime.constants import NODE_PING_S
from runtime.grpc_auth import open_aio_channel
from runtime.object_store import ObjectStore
from runtime.protocol import common_pb2, gcs_pb2, gcs_pb2_grpc, raylet_pb2, raylet_pb2_grpc
from runtime.protocol.common_pb2 import NodeInfo, ShapeCount
from runtime.raylet import actor_host, drain, objects, owner_death, scheduling
from runtime.raylet.bundles import Bundles
from runtime.raylet.cluster_view import SPILL_MEMORY_S, ClusterView
from runtime.raylet.env_setup import EnvSetup
from runtime.raylet.gcs_reports import GcsReports
from runtime.raylet.gpus import GpuSlots, gpu_amount
from runtime.raylet.transfer import ObjectTransfer
from runtime.raylet.worker_pool import Worker, WorkerPool
from runtime.resources import add, fits, shape_key, subtract
from runtime.transport import Connection
from runtime.util.scheduling_strategies import SPREAD

log = logging.getLogger("rayctl.raylet")

# what the GCS asks of a node for placement groups (over this transport: each create waits on it)
BUNDLE_METHODS = ("prepare_bundles", "commit_bundles", "cancel_bundles", "list_bundles")


@dataclass(eq=False)
class LeaseRequest:
    shape: dict[str, float]
    owner: Connection
    future: asyncio.Future[dict[str, Any]]
    strategy: Any = None
    allow_spill: bool = True
    runtime_env: dict[str, Any] | None = None
    retriable: bool = False  # the owner's next task has retries left (for the memory monitor)


class Raylet:
    def __init__(self, args: argparse.Namespace, credentials: Credentials) -> None:
        self.args = args
        self.token = credentials.token
        self.tls = credentials.tls  # the cluster's TLS material, or None: it runs without
        self.node_id: str = args.node_id
        self.host: str = args.host
        self.total: dict[str, float] = json.loads(args.resources)
        self.available = dict(self.total)
        self.bundles = Bundles(self.total, self.available)
        self.gpus = GpuSlots(int(self.total.get("GPU", 0)), os.environ.get("CUDA_VISIBLE_DEVICES"))
        self.queue: list[LeaseRequest] = []
        self._recheck: asyncio.TimerHandle | None = None  # see dispatch()
        self.leases: dict[str, tuple[Worker, dict[str, float]]] = {}
        self.backlogs: dict[Connection, dict[tuple[tuple[str, float], ...], int]] = defaultdict(
            dict
        )
        self.drivers: dict[Connection, str] = {}
        self.actor_workers: dict[str, tuple[Worker, dict[str, float]]] = {}
        self.view = ClusterView()  # the other nodes, from the GCS's sync stream
        self.idle_since = time.time()
        self.shm_dir = os.path.join(args.shm_root, f"rayctl-{self.node_id}")
        self.log_dir = os.path.join(args.session_dir, "logs")  # the dashboard reads it (ListLogs)
        self.store = ObjectStore(
            self.shm_dir,
            args.object_store_memory,
            os.path.join(args.session_dir, "spill", self.node_id),
            make_spare=self._make_spare,
            spill_capacity_bytes=args.spill_capacity_bytes,
        )
        self.transfer = ObjectTransfer(self.store, self.shm_dir, self.token, self._node_data_address,
                                       self.node_id, tls=self.tls)
        self._raylet_stubs: dict[str, raylet_pb2_grpc.RayletStub] = {}
        self.pool: WorkerPool | None = None
        self.gcs: gcs_pb2_grpc.GcsStub | None = None
        self.gcs_sync: gcs_pb2_grpc.NodeSyncStub | None = None
        self.ping_s = NODE_PING_S  # with nothing to report; the GCS says how often at registration
        self.stopping = asyncio.Event()
        self.drain: drain.Drain | None = None  # set once a drain is accepted (runtime/raylet/drain.py)
        self.owners = drain.ObjectOwners()
        self.load_changed = True
        self._beat_now = asyncio.Event()
        self.envs = EnvSetup(args.session_dir, self._gcs_call)
        self.reports = GcsReports(self._gcs_call, self.stopping)  # retried until acknowledged
        self._spread_after = ""  # the node the last SPREAD lease request went to

    @property
    def cluster_view(self) -> list[common_pb2.NodeInfo]:
        return self.view.nodes()

    @property
    def draining(self) -> bool:
        """Takes no new leases, actors or bundles."""
        return self.drain is not None

    async def request_drain(self, request: raylet_pb2.DrainRequest) -> raylet_pb2.DrainReply:
        return await drain.request_drain(self, request)

    # -- placement group bundles (called by the GCS) ----------------------------------------
    def bundle_call(self, method: str, payload: dict[str, Any]) -> Any:
        """prepare (and with `commit`, commit at once: the group's only node), commit, cancel:
        '' when done, else why not; list: the groups held here."""
        if method == "list_bundles":
            return self.bundles.held()
        pg_id = payload["pg_id"]
        if method == "cancel_bundles":
            self.bundles.cancel(pg_id)
            error = ""
        elif method == "prepare_bundles":
            if self.draining:  # placed before the GCS saw the drain
                return f"node {self.node_id} is draining"
            error = self.bundles.prepare(pg_id, payload["bundles"])
            if error or not payload.get("commit"):
                return error
            error = self.bundles.commit(pg_id)
        else:
            error = self.bundles.commit(pg_id)
        self.dispatch()
        return error

    # -- leases ----------------------------------------------------------------------------
    async def request_lease(self, conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
        strategy = payload.get("strategy")
        if isinstance(strategy, dict) and strategy["node_id"] not in {n.node_id for n in self.cluster_view}:
            await self._refresh_view()  # a node that joined since the last heartbeat
        return await self._lease(conn, payload)

    async def _refresh_view(self) -> None:
        if self.gcs is None:
            return
        try:
            reply = await self.gcs.GetNodes(gcs_pb2.Empty(), timeout=5)
            self.view.replace(reply.nodes)
        except grpc.aio.AioRpcError:
            pass

    def _lease(self, conn: Connection, payload: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        shape = payload["shape"]
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_event_loop().create_future()
        req = LeaseRequest(shape, conn, fut, payload.get("strategy"), payload.get("allow_spill", True),
                           payload.get("runtime_env"), bool(payload.get("retriable")))
        if self.draining:
            req.allow_spill = True
        decision = scheduling.choose(shape, req.strategy, self.node_id, self.total, self.available,
                                     self.cluster_view, req.allow_spill, self._spread_after)
        if req.strategy == SPREAD and decision.kind is not scheduling.DecisionKind.ERROR:
            self._spread_after = decision.node.node_id if decision.node is not None else self.node_id
        if decision.kind is scheduling.DecisionKind.ERROR:
            raise ValueError(decision.error)
        if decision.kind is scheduling.DecisionKind.SPILL:
            fut.set_result(self._spill(req, decision.node))
            return fut
        if self.draining and not payload.get("backlog"):
            # spilled here but this node is going away: the submitter asks its own raylet again
            fut.set_result({"rejected": f"node {self.node_id} is draining"})
            return fut
        if payload.get("backlog"):
            self.backlogs[conn][shape_key(shape)] = payload["backlog"]
            self.mark_load_changed()
        self.queue.append(req)
        self.dispatch()
        return fut

    def _spill(self, req: LeaseRequest, node: common_pb2.NodeInfo) -> dict[str, Any]:
        """Point the submitter to `node`; count the shape as taken there until the next view
        (not for SPREAD, which goes round-robin by the GCS's view: short tasks are back before
        the view says so, and counting them would pile the next ones here)."""
        if req.strategy != SPREAD:
            subtract(node.available, req.shape)  # type: ignore[arg-type]
        return {"spillback": {"node_id": node.node_id, "address": f"{node.address}:{node.local_port}"}}

    def reject_queued(self, reason: str) -> None:
        """The node is stopping: answer every queued lease request so submitters retry elsewhere
        (instead of seeing their requests cancelled with the process)."""
        for req in self.queue:
            if not req.future.done():
                req.future.set_result({"rejected": reason})
        self.queue.clear()

    def dispatch(self) -> None:
        """Grant queued leases in order while resources allow (a shape that does not fit now
        does not block smaller shapes behind it)."""
        for req in list(self.queue):
            if req.future.done():
                self.queue.remove(req)
                continue
            devices = None
            if fits(req.shape, self.available) and not self.draining:
                devices = self.gpus.assign(gpu_amount(req.shape))  # None: no device free as a whole
            if devices is not None:
                self.queue.remove(req)
                subtract(self.available, req.shape)
                asyncio.ensure_future(self._grant(req, devices))
            elif not isinstance(req.strategy, dict):
                # busy here: another node may have room now (one that joined since, say), also
                # for a request spilled here, which came with allow_spill off only so that its
                # first decision would not bounce it on
                others = [n for n in self.cluster_view if n.node_id != self.node_id and n.state == NodeInfo.ALIVE]
                room = [n for n in others if fits(req.shape, dict(n.available))]
                if room:
                    self.queue.remove(req)
                    req.future.set_result(self._spill(req, room[0]))
        if self.queue and self._recheck is None:
            # The spills counted against other nodes expire after SPILL_MEMORY_S, and no view
            # update may come to say so: a node whose short tasks all ended between two of its
            # reports reports nothing new. Look again then, or a request queued here behind
            # those counts would wait for an update that never comes.
            self._recheck = asyncio.get_event_loop().call_later(SPILL_MEMORY_S + 0.05,
                                                                   self._dispatch_again)
        self.update_idle()

    def _dispatch_again(self) -> None:
        self._recheck = None
        self.dispatch()

    async def _grant(self, req: LeaseRequest, devices: tuple[str, ...]) -> None:
        assert self.pool is not None
        try:
            worker = await self.pool.acquire(*self.envs.setup(req.runtime_env))
        except Exception as exc:  # noqa: BLE001
            add(self.available, req.shape)
            self.gpus.release(devices, gpu_amount(req.shape))
            if not req.future.done():
                req.future.set_exception(exc)
            return
        if req.future.done() or not req.owner.is_open:  # the owner went away meanwhile
            add(self.available, req.shape)
            self.gpus.release(devices, gpu_amount(req.shape))
            self.pool.release(worker)
            self.dispatch()
            return
        lease_id = ids.random_id(6)
        worker.lease_id = lease_id
        worker.owner = req.owner
        worker.gpu_ids, worker.gpus = devices, gpu_amount(req.shape)
        worker.busy_since, worker.retriable = time.monotonic(), req.retriable
        self.leases[lease_id] = (worker, req.shape)
        self.update_idle()  # dispatch() ran before the grant: it saw neither the request nor this
        req.future.set_result(
            {
                "lease_id": lease_id,
                "worker_id": worker.worker_id,
                "address": worker.address,
                "node_id": self.node_id,
                "gpu_ids": list(devices),
            }
        )

    def return_lease(self, lease_id: str, kill: bool = False) -> None:
        entry = self.leases.pop(lease_id, None)
        if entry is None:
            return
        worker, shape = entry
        self.give_back(_without_cpu(shape) if worker.blocked else shape)
        self.give_back_devices(worker)
        assert self.pool is not None
        if kill:
            self.pool.kill(worker)
        else:
            self.pool.release(worker)
        self.dispatch()

    def give_back_devices(self, worker: Worker) -> None:
        self.gpus.release(worker.gpu_ids, worker.gpus)
        worker.gpu_ids, worker.gpus = (), 0.0

    async def _gcs_call(self, method: str, request: Any, timeout: float = 60) -> Any:
        assert self.gcs is not None
        return await getattr(self.gcs, method)(request, timeout=timeout)

    def set_blocked(self, conn: Connection, blocked: bool) -> None:
        """A leased worker waits in get(): lend its CPUs to other leases until it resumes (as Ray
        does), so nested tasks cannot deadlock a node. Resuming may oversubscribe briefly."""
        worker = self.pool.by_connection(conn) if self.pool is not None else None
        if worker is None or not worker.lease_id or worker.blocked == blocked:
            return
        shape = self.leases[worker.lease_id][1]
        cpus = {"CPU": shape.get("CPU", 0.0)}
        worker.blocked = blocked
        if blocked:
            self.give_back(cpus)
            self.dispatch()
        else:
            subtract(self.available, cpus)

    def _live_node(self, node_id: str) -> common_pb2.NodeInfo | None:
        return next((n for n in self.cluster_view if n.node_id == node_id and n.state != NodeInfo.DEAD), None)

    def _node_data_address(self, node_id: str) -> str | None:
        node = self._live_node(node_id)
        return f"{node.address}:{node.data_port}" if node is not None and node.data_port else None

    def raylet_stub(self, address: str) -> raylet_pb2_grpc.RayletStub:
        stub = self._raylet_stubs.get(address)
        if stub is None:
            channel = open_aio_channel(address, self.token, tls=self.tls)
            stub = self._raylet_stubs[address] = raylet_pb2_grpc.RayletStub(channel)
        return stub

    def node_grpc_address(self, node_id: str) -> str | None:
        node = self._live_node(node_id)
        return f"{node.address}:{node.raylet_port}" if node is not None else None

    def _make_spare(self, path: str, size: int) -> None:
        """Allocate a spare file for the store in a thread (a GB takes ~0.25 s)."""
        done = asyncio.get_running_loop().run_in_executor(None, shm.preallocate, path, size)
        done.add_done_callback(lambda f: self.store.spare_ready(
            path, size, not f.cancelled() and f.exception() is None))

    def free(self, batch: list[tuple[str, str]]) -> None:
        objects.free(self, batch)

    def delete_copies(self, object_ids: list[str]) -> None:
        objects.delete_copies(self, object_ids)

    def mark_load_changed(self) -> None:
        """The queued demand changed: tell the GCS now (after a 10 ms batch), not at the next
        check, so the autoscaler hears of new demand within milliseconds."""
        self.load_changed = True
        self._beat_now.set()

    def give_back(self, shape: dict[str, float]) -> None:
        """Return a finished lease's resources (bundle resources of a removed group are gone)."""
        add(self.available, {k: v for k, v in shape.items() if k in self.total})

    def update_idle(self) -> None:
        busy = bool(self.leases) or bool(self.actor_workers) or bool(self.queue)
        if busy:
            self.idle_since = 0.0
        elif not self.idle_since:
            self.idle_since = time.time()

    def on_worker_death(self, worker: Worker, code: int) -> None:
        actor_host.on_worker_death(self, worker, code)

    def on_connection_closed(self, conn: Connection) -> None:
        """A driver or worker went away: drop its queued requests, return its leases."""
        for req in list(self.queue):
            if req.owner is conn:
                self.queue.remove(req)
        if self.backlogs.pop(conn, None):
            self.mark_load_changed()
        for lease_id, (worker, _) in list(self.leases.items()):
            if worker.owner is conn:
                self.return_lease(lease_id)
        job_id = self.drivers.pop(conn, None)
        owner_death.on_local_process_gone(self, conn, bool(conn.context.get("local")))
        if job_id and not self.stopping.is_set():
            self.reports.send("FinishJob", gcs_pb2.JobIdRequest(job_id=job_id), f"job {job_id}'s end")
        self.dispatch()

    def load(self) -> list[common_pb2.ShapeCount]:
        totals: dict[tuple[tuple[str, float], ...], int] = defaultdict(int)
        for backlog in self.backlogs.values():
            for key, count in backlog.items():
                totals[key] += count
        nodes = self.cluster_view or []
        result = []
        for key, count in totals.items():
            if count <= 0:
                continue
            shape = dict(key)
            feasible = fits(shape, self.total) or any(fits(shape, dict(n.total)) for n in nodes)
            result.append(
                common_pb2.ShapeCount(
                    shape=shape, count=count, infeasible=not feasible, kind=ShapeCount.TASK
                )
            )
        return result

    # -- the node-local transport --------------------------------------------------------------
    def handle(self, conn: Connection, method: str, payload: Any) -> Any:
        if method in BUNDLE_METHODS:
            return self.bundle_call(method, payload)
        if method == "lease":
            return self.request_lease(conn, payload)
        if method == "return_lease":
            self.return_lease(payload["lease_id"], payload.get("kill", False))
            return None
        if method in ("blocked", "unblocked"):
            self.set_blocked(conn, method == "blocked")
            return None
        if method == "backlog":
            self.backlogs[conn][shape_key(payload["shape"])] = payload["count"]
            self.mark_load_changed()
            return None
        if method == "seal":  # a task's return names its caller as owner; a put's owner is `conn`
            self.store.add(payload["object_id"], payload["size"], primary=True)
            self.owners.sealed(payload["object_id"], payload.get("owner") or conn)
            return None
        if method == "get_path":
            return self.store.get_path(payload)
        if method == "pull":
            return self.transfer.pull(payload["object_id"], payload["node_id"])
        if method == "free":
            self.free(payload)
            return None
        if method == "register_worker":
            assert self.pool is not None
            conn.context["local"] = True  # this node's process: its address dies with `conn`
            if not conn.on_close:
                conn.on_close.append(self.on_connection_closed)
            worker = self.pool.on_registered(payload["worker_id"], conn, payload["address"])
            if worker is not None:
                self.dispatch()
            return {"node_id": self.node_id}
        if method == "register_driver":
            self.drivers[conn] = payload["job_id"]
            conn.context["local"] = True
            return {"node_id": self.node_id, "shm_dir": self.shm_dir}
        if method == "hello":
            conn.on_close.append(self.on_connection_closed)
            return {"node_id": self.node_id, "shm_dir": self.shm_dir, "resources": self.total}
        raise ValueError(f"unknown raylet method {method!r}")

    # -- actors (called by the GCS over gRPC): runtime/raylet/actor_host.py ---------------------
    async def start_actor(self, actor: common_pb2.ActorInfo) -> raylet_pb2.StartActorReply:
        return await actor_host.start_actor(self, actor)

    def kill_actor_worker(self, actor_id: str) -> None:
        actor_host.kill_actor_worker(self, actor_id)


def _without_cpu(shape: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in shape.items() if k != "CPU"}

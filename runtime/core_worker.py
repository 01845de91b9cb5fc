"""The core worker: the library inside every driver and worker. It runs an asyncio I/O thread that
holds the connections (the local raylet, other workers, the GCS), owns the objects this process
created, serves other processes asking about them, and submits tasks and actor calls."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future as CFuture
from typing import Any

import grpc

from runtime import ids, object_ref, shm
from runtime.constants import GCS_RECONNECT_TIMEOUT_S, INLINE_OBJECT_MAX_BYTES
from runtime.exceptions import GetTimeoutError, ObjectLostError, OwnerDiedError, TaskError
from runtime.grpc_auth import open_channel
from runtime.object_ref import ObjectRef
from runtime.protocol import gcs_pb2, gcs_pb2_grpc
from runtime.reference_table import READY, Entry, ReferenceTable
from runtime.serialization import Serialized, deserialize, serialize
from runtime.tls import ClusterTls
from runtime.transport import Connection, ConnectionLost, connect, serve

log = logging.getLogger("rayctl.core_worker")


class CoreWorker:
    def __init__(
        self,
        *,
        gcs_address: str,
        token: str,
        raylet_port: int,
        host: str,
        mode: str,
        job_id: str = "",
        namespace: str = "",
        worker_id: str = "",
        tls: ClusterTls | None = None,
    ) -> None:
        self.gcs_address = gcs_address
        self.token = token
        self.tls = tls  # the cluster's TLS material when it runs TLS
        self.host = host
        self.mode = mode  # "driver" | "worker"
        self.job_id = job_id
        self.namespace = namespace
        self.worker_id = worker_id or ids.random_id(6)
        self.task_ids = ids.TaskIdGenerator()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="rayctl-io", daemon=True)
        self._thread.start()
        self._conns: dict[str, asyncio.Future[Connection]] = {}
        self.handlers = self._peer_handlers()
        self._server = self.run(serve(host, 0, token, self._handle, tls=tls))
        self.address = f"{host}:{self._server.sockets[0].getsockname()[1]}"
        self.refs = ReferenceTable(self.address, self._free_object, self._release_borrowed)
        self.raylet, self.node_id, self.shm_dir = self._join_raylet(f"{host}:{raylet_port}")
        self._channel = open_channel(gcs_address, token, tls=tls)
        self.gcs = gcs_pb2_grpc.GcsStub(self._channel)
        self._free_batch: list[tuple[str, str]] = []
        self._background_calls: set[Any] = set()
        self._warned_shapes: set[tuple[tuple[str, float], ...]] = set()
        self.log_sink: Callable[[str, str], None] = _print_log
        from runtime.actor_submitter import ActorSubmitter
        from runtime.job_env import JobEnv
        from runtime.task_events import TaskEvents
        from runtime.task_submitter import TaskSubmitter

        self.events = TaskEvents(self)
        self.tasks = TaskSubmitter(self)
        self.actors = ActorSubmitter(self)
        self.job_env = JobEnv(self.gcs_call, None)  # init(runtime_env=...) replaces it
        self.current_task_id = ""
        self.current_actor_id = ""
        # the placement group the running task or actor captures its children into, if any
        self.capture_pg: Any = None
        self.gpu_ids: list[Any] = []  # the devices of the running task or actor (get_gpu_ids)
        object_ref.set_reference_counter(self)
        self.closed = False

    def _peer_handlers(self) -> dict[str, Callable[[Connection, Any], Any]]:
        """What other processes may ask this one (mostly about the objects it owns)."""
        return {
            "get_object": self._serve_get_object,
            "release": self._serve_release,
            "add_borrower": self._serve_add_borrower,
            "ready": self._serve_ready,
            "log": self._serve_log,
            "stream_item": lambda _conn, payload: self.tasks.on_stream_item(*payload),
            "oom_killed": lambda _conn, p: self.tasks.on_oom_killed(p["lease_id"], p["message"]),
        }

    def _join_raylet(self, raylet_address: str) -> tuple[Connection, str, str]:
        """Connect to this node's raylet (it may call us back on the same connection); returns
        the connection, the node's id and its shared-memory directory."""
        raylet: Connection = self.run(
            connect(raylet_address, self.token, self._handle,
                    {"role": self.mode, "address": self.address}, tls=self.tls)
        )
        hello = self.request(raylet, "hello")
        return raylet, hello["node_id"], hello["shm_dir"]

    # -- the I/O thread ------------------------------------------------------------------------
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        """Run a coroutine on the I/O thread from a user thread and wait for its result."""
        fut: CFuture[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def request(
        self, conn: Connection, method: str, payload: Any = None, timeout: float | None = None
    ) -> Any:
        """A request over `conn`, from a user thread, waiting for the reply."""

        async def go() -> Any:
            return await conn.request(method, payload)

        return self.run(go(), timeout)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    async def connection(self, address: str) -> Connection:
        """A cached authenticated connection to another core worker."""
        fut = self._conns.get(address)
        if fut is not None:
            if not fut.done():
                return await asyncio.shield(fut)
            if fut.exception() is None and fut.result().is_open:
                return fut.result()
        fut = self.loop.create_future()
        self._conns[address] = fut
        try:
            conn = await connect(
                address, self.token, self._handle, {"role": self.mode, "address": self.address},
                tls=self.tls,
            )
        except BaseException as exc:
            self._conns.pop(address, None)
            fut.set_exception(exc)
            fut.exception()
            raise
        fut.set_result(conn)
        return conn

    async def ask(self, address: str, method: str, payload: Any = None) -> Any:
        """A request to another core worker (usually an object's owner), over the cached
        connection. Raises ConnectionLost / OSError when it is gone."""
        conn = await self.connection(address)
        return await conn.request(method, payload)

    async def raylet_connection(self, address: str) -> Connection:
        """A connection to another node's raylet (after a spillback), introduced with hello."""
        conn = await self.connection(address)
        if not conn.context.get("hello"):
            conn.context["hello"] = True
            await conn.request("hello", None)
        return conn

    def _handle(self, conn: Connection, method: str, payload: Any) -> Any:
        handler = self.handlers.get(method)
        if handler is None:
            raise ValueError(f"unknown method {method!r}")
        return handler(conn, payload)

    # -- objects: put / get ----------------------------------------------------------------------
    def fresh_object_id(self) -> str:
        """An id for an object no task returns (a put, a yielded value, an error to hand out)."""
        return ids.object_id_for(self.task_ids.next(), 0)

    def new_owned_ref(self, object_id: str) -> ObjectRef:
        self.refs.new_owned(object_id)
        return ObjectRef(object_id, self.address)

    def put_serialized(self, object_id: str, data: Serialized) -> ObjectRef:
        ref = self.new_owned_ref(object_id)
        contains = [(r.id, r.owner_address) for r in data.contained_refs]
        if data.size <= INLINE_OBJECT_MAX_BYTES:
            self.refs.complete(object_id, inline=data.inline(), size=data.size, contains=contains)
        else:
            size = shm.write_object(self.shm_dir, object_id, data.meta, data.buffers)
            self.request(self.raylet, "seal", {"object_id": object_id, "size": size})
            self.refs.complete(object_id, location=(self.node_id, self.shm_dir), size=size,
                               contains=contains)
        return ref

    def put(self, value: Any) -> ObjectRef:
        if isinstance(value, ObjectRef):
            raise TypeError("put() of an ObjectRef is not allowed: pass the ref itself instead")
        return self.put_serialized(self.fresh_object_id(), serialize(value))

    def get(self, refs: list[ObjectRef], timeout: float | None) -> list[Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.blocking(refs):
            return [self._get_one(ref, deadline) for ref in refs]

    @contextlib.contextmanager
    def blocking(self, refs: list[ObjectRef]) -> Iterator[None]:
        """Inside a task, tell the raylet while we wait on objects that are not ready, so that
        the CPUs of our lease can run the tasks we wait for."""
        waits = self.mode == "worker" and bool(self.current_task_id) and not all(
            self.ready_status(r.id) for r in refs)
        if waits:
            self.call_soon(self.raylet.send, "blocked", None)
        try:
            yield
        finally:
            if waits:
                self.call_soon(self.raylet.send, "unblocked", None)

    def _get_one(self, ref: ObjectRef, deadline: float | None) -> Any:
        entry = self.refs.get_entry(ref.id)
        if entry is None:
            status = self._ask_owner(ref, deadline)
            return self._materialize(ref.id, status["inline"], status["location"], status["error"])
        for attempt in range(3):
            if entry.state != READY:
                event = threading.Event()
                if self.refs.on_ready(ref.id, event.set):
                    try:
                        self._block_until(event, deadline, ref)
                    except GetTimeoutError:  # gets with a timeout in a loop leave nothing behind
                        self.refs.off_ready(ref.id, event.set)
                        raise
            try:
                return self._materialize(ref.id, entry.inline, entry.location, entry.error)
            except ObjectLostError as exc:
                if isinstance(exc, TaskError):  # the task itself raised it: its own result, kept
                    raise
                rebuilt = self.run(_call(self.tasks.reconstruct, ref.id)) if attempt < 2 else False
                if not rebuilt:
                    raise ObjectLostError(
                        f"object {ref.id} is lost ({exc}) and cannot be rebuilt: the task that made "
                        "it is not retryable (max_retries=0), is an actor call, or ran out of retries"
                    ) from None
        raise AssertionError("unreachable")

    def _block_until(self, event: threading.Event, deadline: float | None, ref: ObjectRef) -> None:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not event.wait(remaining):
            raise GetTimeoutError(f"get() timed out waiting for {ref}")

    def _ask_owner(self, ref: ObjectRef, deadline: float | None) -> dict[str, Any]:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return self.run(asyncio.wait_for(self.ask(ref.owner_address, "get_object", ref.id), remaining))  # type: ignore[no-any-return]
        except TimeoutError:
            raise GetTimeoutError(f"get() timed out waiting for {ref}") from None
        except (ConnectionLost, OSError) as exc:
            raise OwnerDiedError(
                f"the owner of {ref} ({ref.owner_address}) is unreachable: {exc}"
            ) from None

    def _materialize(self, object_id: str, inline: Any, location: Any, error: Any) -> Any:
        if error is not None:
            raise error.as_instanceof_cause() if isinstance(error, TaskError) else error
        if inline is not None:
            return deserialize(inline[0], inline[1])
        node_id, shm_dir = location
        if node_id != self.node_id:  # another node's object: our raylet fetches a local copy
            path = self.request(self.raylet, "pull", {"object_id": object_id, "node_id": node_id})
            meta, buffers = shm.read_object(os.path.dirname(path), object_id)
            return deserialize(meta, buffers)
        try:
            meta, buffers = shm.read_object(shm_dir, object_id)
        except shm.ObjectNotFoundError:
            path = self.request(self.raylet, "get_path", object_id)
            meta, buffers = shm.read_object(os.path.dirname(path), object_id)
        return deserialize(meta, buffers)

    def ready_status(self, object_id: str) -> bool | None:
        entry = self.refs.get_entry(object_id)
        return None if entry is None else entry.state == READY

    # -- serving other processes -----------------------------------------------------------------
    async def _serve_get_object(self, conn: Connection, object_id: str) -> dict[str, Any]:
        entry = self.refs.get_entry(object_id)
        if entry is None:
            lost = ObjectLostError(
                f"object {object_id} was freed or never existed at its owner {self.address}"
            )
            return {"inline": None, "location": None, "error": lost}
        if entry.state != READY:
            fut = self.loop.create_future()
            if self.refs.on_ready(
                object_id, functools.partial(self.loop.call_soon_threadsafe, _set_done, fut)
            ):
                await fut
        return {"inline": entry.inline, "location": entry.location, "error": entry.error}

    def _serve_release(self, conn: Connection, payload: tuple[str, str]) -> None:
        object_id, borrower = payload
        self.refs.remove_borrower(object_id, borrower)

    def _serve_ready(self, conn: Connection, object_id: str) -> bool:
        """Is this owned object ready? (A freed or unknown one is "ready": get() will say why.)"""
        entry = self.refs.get_entry(object_id)
        return entry is None or entry.state == READY

    def owner_says_ready(self, ref: ObjectRef) -> bool:
        """Ask a borrowed ref's owner whether it is ready, without fetching it. An unreachable
        owner counts as ready: get() then raises OwnerDiedError."""
        try:
            return bool(self.run(asyncio.wait_for(self.ask(ref.owner_address, "ready", ref.id), 10)))
        except (ConnectionLost, OSError, TimeoutError):
            return True

    def _serve_add_borrower(self, conn: Connection, payload: tuple[str, str]) -> bool:
        object_id, borrower = payload
        self.refs.add_borrower(object_id, borrower)
        return True

    def _serve_log(self, conn: Connection, payload: tuple[str, str]) -> None:
        self.log_sink(*payload)

    def _release_borrowed(self, object_id: str, owner_address: str) -> None:
        """We dropped our last ref to a borrowed object: tell its owner (if it counted us)."""
        if self.closed:
            return

        async def send() -> None:
            try:
                conn = await self.connection(owner_address)
                conn.send("release", (object_id, self.address))
            except (ConnectionLost, OSError):
                pass  # the owner is gone: nothing left to release

        self.loop.call_soon_threadsafe(asyncio.ensure_future, send())

    def _free_object(self, object_id: str, entry: Entry) -> None:
        self.tasks.lineage.pop(object_id, None)
        if entry.location is None or self.closed:
            return
        self._free_batch.append((object_id, entry.location[0]))
        if len(self._free_batch) == 1:
            self.loop.call_soon_threadsafe(self._flush_frees)

    def _flush_frees(self) -> None:
        batch, self._free_batch = self._free_batch, []
        if batch and self.raylet.is_open:
            self.raylet.send("free", batch)

    # -- counting (called by ObjectRef) -----------------------------------------------------------
    def add_local_ref(self, ref: ObjectRef) -> None:
        self.refs.add_local_ref(ref)

    def remove_local_ref(self, ref: ObjectRef) -> None:
        if not self.closed:
            self.refs.remove_local_ref(ref)

    def on_ref_deserialized(self, ref: ObjectRef) -> None:
        pass

    # -- GCS -------------------------------------------------------------------------------------
    def gcs_call(self, method: str, request: Any, timeout: float = 30,
                 retry_s: float = GCS_RECONNECT_TIMEOUT_S) -> Any:
        """A GCS call from a user or executor thread. While the GCS does not answer at all (it
        is restarting) the call is retried for up to `retry_s`; every call is safe to repeat
        (creations carry their ids, which the GCS recognises)."""
        deadline = time.monotonic() + retry_s
        delay = 0.05
        while True:
            try:
                return getattr(self.gcs, method)(request, timeout=timeout)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def gcs_call_async(self, method: str, request: Any, timeout: float = 30,
                       on_error: Callable[[BaseException], None] | None = None) -> None:
        """Send a GCS call without waiting for it (the future is kept until done, so it is not
        cancelled when dropped); a failure goes to `on_error`, else to the log."""
        future = getattr(self.gcs, method).future(request, timeout=timeout)
        self._background_calls.add(future)

        def done(f: Any) -> None:
            self._background_calls.discard(f)
            error = f.exception()
            if error is None:
                return
            if on_error is not None:
                on_error(error)
            else:
                log.warning("GCS call %s failed: %s", method, error)

        future.add_done_callback(done)

    def nodes(self) -> list[Any]:
        return list(self.gcs_call("GetNodes", gcs_pb2.Empty()).nodes)

    def warn_infeasible(self, shape: dict[str, float], name: str) -> None:
        from runtime.resources import describe, shape_key

        key = shape_key(shape)
        if key in self._warned_shapes:
            return
        try:
            reply = self.gcs_call("CheckFeasible", gcs_pb2.FeasibleRequest(shape=shape), timeout=5,
                                  retry_s=0)
        except grpc.RpcError:
            return
        if reply.fits_a_node or reply.fits_launchable:
            return
        self._warned_shapes.add(key)
        print(
            f"Warning: {name} needs {describe(shape)}, which no node of the cluster has and no node "
            f"type the autoscaler may launch could provide; it stays pending until such a node joins.",
            file=sys.stderr,
            flush=True,
        )

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        object_ref.set_reference_counter(None)
        self.events.flush_now()

        async def close() -> None:
            self._server.close()
            for fut in self._conns.values():
                if fut.done() and fut.exception() is None:
                    fut.result().close()
            self.raylet.close()
            await asyncio.sleep(0)  # the closed connections' callbacks run now, not after us
            # in-flight lease requests and the like end here, quietly (not "destroyed pending");
            # again for tasks the closing connections' callbacks start (an actor's resolver)
            for _ in range(5):
                others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                if not others:
                    break
                for task in others:
                    task.cancel()
                await asyncio.gather(*others, return_exceptions=True)

        try:
            self.run(close(), timeout=5)
        except Exception:  # noqa: BLE001
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self._channel.close()


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _print_log(prefix: str, text: str) -> None:
    stream = sys.stdout
    for line in text.splitlines():
        stream.write(f"{prefix} {line}\n")
    stream.flush()

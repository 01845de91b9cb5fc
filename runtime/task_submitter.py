"""Submitting normal tasks: resolve arguments, lease workers from the raylet per resource shape,
push tasks straight to leased workers (no gRPC on the per-task path), retry on worker death.

A lease is kept while tasks of its shape are queued and returned after a short linger, so a loop
of `get(f.remote())` reuses one worker instead of asking the raylet each time. Under
scheduling_strategy="SPREAD" a lease runs one task and goes back: each task is its own lease
request, which the raylet places round-robin over the nodes (reusing one lease would put a batch
of short tasks on one node). The raylet is told the backlog (every queued task counts) so the
autoscaler sees real demand.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime.exceptions import OutOfMemoryError, TaskCancelledError, TaskError, WorkerCrashedError
from runtime.object_ref import ObjectRef
from runtime.resources import shape_key
from runtime.streaming import Stream, on_end, on_item
from runtime.transport import Connection, ConnectionLost
from runtime.util.scheduling_strategies import SPREAD

if TYPE_CHECKING:
    from runtime.core_worker import CoreWorker
    from runtime.task_events import TaskRecord

LEASE_LINGER_S = 0.02
MAX_LEASE_REQUESTS_IN_FLIGHT = 16
INFEASIBLE_WARNING_AFTER_S = 2.0
# A spilled request waits where it lands, unless another node has room first (then it moves on
# again); past this many moves the submitter starts over at its own raylet.
MAX_SPILL_HOPS = 4


@dataclass(eq=False, slots=True)
class TaskState:
    spec: dict[str, Any]
    shape: dict[str, float]
    return_ids: list[str]
    ref_args: list[str]  # owned objects passed as top-level args (counted while the task runs)
    retries_left: int
    retry_exceptions: bool | list[type]
    strategy: Any = None  # wire form, see runtime.util.scheduling_strategies.to_wire
    runtime_env: dict[str, Any] | None = None  # packaged (runtime.job_env)
    unresolved: int = 0
    cancelled: bool = False
    lease: Lease | None = None
    record: TaskRecord | None = None  # what `rayctl list tasks` shows of it (runtime/task_events.py)
    task_events: bool = True  # False: not recorded (Ray's enable_task_events=False)


@dataclass(eq=False)
class Lease:
    lease_id: str
    conn: Connection  # to the leased worker
    queue: ShapeQueue
    raylet: Connection  # the raylet that granted it (ours, or one we were spilled to)
    gpu_ids: tuple[str, ...] = ()  # the devices the raylet gave it (CUDA_VISIBLE_DEVICES)
    node_id: str = ""
    worker_id: str = ""
    busy: TaskState | None = None
    linger: asyncio.TimerHandle | None = None
    oom_message: str = ""  # the node's memory monitor is killing its worker, and why


@dataclass(eq=False)
class ShapeQueue:
    shape: dict[str, float]
    strategy: Any = None
    runtime_env: dict[str, Any] | None = None
    pending: deque[TaskState] = field(default_factory=deque)
    leases: list[Lease] = field(default_factory=list)
    requesting: int = 0
    reported_backlog: int = -1
    report_scheduled: bool = False


class TaskSubmitter:
    def __init__(self, cw: CoreWorker) -> None:
        self.cw = cw
        self.queues: dict[tuple[Any, ...], ShapeQueue] = {}
        self.by_task: dict[str, TaskState] = {}
        self.lineage: dict[str, TaskState] = {}  # object id -> the finished task that made it
        self.streams: dict[str, Stream] = {}  # generator tasks still running (runtime/streaming.py)
        self._inbox: list[TaskState] = []
        self._inbox_lock = threading.Lock()

    # -- from user threads -----------------------------------------------------------------------
    def submit(self, state: TaskState) -> None:
        if state.task_events:
            state.record = self.cw.events.new(state.spec, state.shape, self.cw.current_task_id)
        with self._inbox_lock:
            self._inbox.append(state)
            first = len(self._inbox) == 1
        if first:
            self.cw.call_soon(self._drain_inbox)

    def _drain_inbox(self) -> None:
        with self._inbox_lock:
            batch, self._inbox = self._inbox, []
        touched = set()
        for state in batch:
            self.by_task[state.spec["task_id"]] = state
            self._resolve_args(state)
            if state.unresolved == 0:
                touched.add(self._enqueue(state))
            elif state.record is not None:
                self.cw.events.waiting(state.record, for_args=True)
        for q in touched:
            self._pump(q)

    # -- argument resolution --------------------------------------------------------------------
    def _resolve_args(self, state: TaskState) -> None:
        for where, value in _ref_slots(state.spec):
            state.unresolved += 1
            self.resolve_arg(state, where, value, functools.partial(self._enqueue_and_pump, state))

    def _enqueue_and_pump(self, state: TaskState) -> None:
        self._pump(self._enqueue(state))

    def resolve_arg(
        self,
        state: TaskState,
        where: tuple[str, Any],
        ref: ObjectRef,
        on_all_resolved: Callable[[], None],
    ) -> None:
        """Replace one ("ref", ref) argument by its value or location once ready (on the I/O
        thread); call `on_all_resolved` when it was the last one."""
        cw = self.cw

        def fill(status: dict[str, Any]) -> None:
            if status["error"] is not None:
                encoded: tuple[Any, ...] = ("e", status["error"])
            elif status["inline"] is not None:
                encoded = ("v", *status["inline"])
            else:
                encoded = ("s", ref.id, status["location"])
            container, key = where
            state.spec[container][key] = encoded
            state.unresolved -= 1
            if state.unresolved == 0:
                on_all_resolved()

        entry = cw.refs.get_entry(ref.id)
        if entry is not None:

            def ready() -> None:
                cw.loop.call_soon_threadsafe(
                    fill, {"inline": entry.inline, "location": entry.location, "error": entry.error}
                )

            if not cw.refs.on_ready(ref.id, ready):
                ready()
            return

        async def ask_owner() -> None:
            try:
                fill(await cw.ask(ref.owner_address, "get_object", ref.id))
            except (ConnectionLost, OSError) as exc:
                from runtime.exceptions import OwnerDiedError

                fill(
                    {
                        "error": OwnerDiedError(f"owner of {ref} is gone: {exc}"),
                        "inline": None,
                        "location": None,
                    }
                )

        asyncio.ensure_future(ask_owner())

    # -- queues and leases ------------------------------------------------------------------------
    def _enqueue(self, state: TaskState) -> ShapeQueue:
        env_key = json.dumps(state.runtime_env, sort_keys=True) if state.runtime_env else ""
        key = (shape_key(state.shape), repr(state.strategy), env_key)
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = ShapeQueue(state.shape, state.strategy, state.runtime_env)
        q.pending.append(state)
        if state.record is not None:
            self.cw.events.waiting(state.record, for_args=False)
        return q

    def _pump(self, q: ShapeQueue) -> None:
        for lease in q.leases:
            if not q.pending:
                break
            if lease.busy is None:
                self._push(lease, q.pending.popleft())
        wanted = len(q.pending) - q.requesting
        while wanted > 0 and q.requesting < MAX_LEASE_REQUESTS_IN_FLIGHT:
            q.requesting += 1
            wanted -= 1
            asyncio.ensure_future(self._request_lease(q))
        self._schedule_backlog_report(q)

    def _schedule_backlog_report(self, q: ShapeQueue) -> None:
        if q.report_scheduled or len(q.pending) == q.reported_backlog:
            return
        q.report_scheduled = True

        def report() -> None:
            q.report_scheduled = False
            if len(q.pending) != q.reported_backlog and self.cw.raylet.is_open:
                q.reported_backlog = len(q.pending)
                self.cw.raylet.send("backlog", {"shape": q.shape, "count": q.reported_backlog})

        self.cw.loop.call_later(0.05, report)

    async def _request_lease(self, q: ShapeQueue) -> None:
        cw = self.cw
        warn = cw.loop.call_later(INFEASIBLE_WARNING_AFTER_S, self._maybe_warn, q)
        request = {"shape": q.shape, "backlog": len(q.pending), "strategy": q.strategy, "allow_spill": True,
                   "runtime_env": q.runtime_env,
                   "retriable": bool(q.pending) and q.pending[0].retries_left != 0}
        try:
            raylet, grant = await self._lease_with_spillback(request)
            conn = await cw.connection(grant["address"])
        except (ConnectionLost, OSError) as exc:
            q.requesting -= 1
            self._fail_pending(q, WorkerCrashedError(f"could not lease a worker: {exc}"))
            return
        except Exception as exc:  # noqa: BLE001 - refused: hard affinity to a dead node, a runtime_env that cannot be built
            q.requesting -= 1
            self._fail_pending(q, exc)
            return
        finally:
            warn.cancel()
        q.requesting -= 1
        lease = Lease(grant["lease_id"], conn, q, raylet, tuple(grant.get("gpu_ids", ())),
                      grant.get("node_id", ""), grant.get("worker_id", ""))
        q.leases.append(lease)
        if q.pending:
            self._push(lease, q.pending.popleft())
            self._pump(q)
        else:
            self._return_lease(lease)

    async def _lease_with_spillback(self, request: dict[str, Any]) -> tuple[Connection, dict[str, Any]]:
        """Ask our raylet; follow spillbacks to other nodes. A spill target that went away (its
        node died since the view was sent) means asking our raylet again, a little later."""
        cw = self.cw
        for attempt in range(20):
            raylet = cw.raylet
            grant = await raylet.request("lease", request)  # our own raylet failing is final
            try:
                hops = 0
                while "spillback" in grant and hops < MAX_SPILL_HOPS:
                    hops += 1
                    raylet = await cw.raylet_connection(grant["spillback"]["address"])
                    grant = await raylet.request("lease", dict(request, backlog=0, allow_spill=False))
                if "spillback" not in grant and "rejected" not in grant:
                    return raylet, grant
            except (ConnectionLost, OSError):
                pass
            # the node we were sent to is draining, stopping or gone: ask again, a little later
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
        raise ConnectionLost("no node accepted the lease after 20 spillbacks to unreachable nodes")

    def _maybe_warn(self, q: ShapeQueue) -> None:
        if q.pending:
            name = q.pending[0].spec["name"]
            self.cw.loop.run_in_executor(None, self.cw.warn_infeasible, q.shape, f"task {name}")

    def _return_lease(self, lease: Lease, kill: bool = False) -> None:
        if lease in lease.queue.leases:
            lease.queue.leases.remove(lease)
        if lease.linger is not None:
            lease.linger.cancel()
        if lease.raylet.is_open:
            lease.raylet.send("return_lease", {"lease_id": lease.lease_id, "kill": kill})

    def _fail_pending(self, q: ShapeQueue, error: BaseException) -> None:
        if q.leases or q.requesting:
            return  # others may still run them
        while q.pending:
            self._finish(q.pending.popleft(), error=error)

    # -- pushing and replies ------------------------------------------------------------------------
    def _push(self, lease: Lease, state: TaskState) -> None:
        if lease.linger is not None:
            lease.linger.cancel()
            lease.linger = None
        lease.busy = state
        state.lease = lease
        if state.record is not None:
            self.cw.events.started(state.record, lease.node_id, lease.worker_id)
        spec = state.spec
        sent = lease.conn.context.setdefault("fns", set())
        if spec["fn_id"] not in sent:
            sent.add(spec["fn_id"])
            spec = dict(spec, fn=spec["fn_bytes"])
        if lease.gpu_ids:
            spec = dict(spec, gpu_ids=lease.gpu_ids)
        try:
            fut = lease.conn.request("push", _wire_spec(spec))
        except ConnectionLost as exc:
            fut = self.cw.loop.create_future()
            fut.set_exception(exc)
        fut.add_done_callback(lambda f: self._on_reply(lease, state, f))

    def _on_reply(self, lease: Lease, state: TaskState, fut: asyncio.Future[Any]) -> None:
        lease.busy = None
        state.lease = None
        q = lease.queue
        exc = fut.exception()
        if exc is not None:
            self._return_lease(lease, kill=True)
            if state.cancelled:
                self._finish(
                    state, error=TaskCancelledError(f"task {state.spec['name']} was cancelled")
                )
            elif state.retries_left != 0:
                self._retry(state)
                q.pending.appendleft(state)
            elif lease.oom_message:
                self._finish(state, error=OutOfMemoryError(f"task {state.spec['name']}: {lease.oom_message}"))
            else:
                self._finish(
                    state,
                    error=WorkerCrashedError(
                        f"the worker running task {state.spec['name']} died ({exc}); no retries left"
                    ),
                )
            self._pump(q)
            return
        reply = fut.result()
        error = reply.get("error")
        if error is not None and self._should_retry(state, error):
            self._retry(state)
            q.pending.appendleft(state)
        else:
            self._finish(state, reply=reply)
        if q.strategy == SPREAD:  # the next task asks for a node of its own
            self._return_lease(lease)
            self._pump(q)
        elif q.pending:
            self._pump(q)
        elif lease in q.leases:
            lease.linger = self.cw.loop.call_later(LEASE_LINGER_S, self._linger_done, lease)

    def _retry(self, state: TaskState) -> None:
        state.retries_left -= 1
        if state.record is not None:
            self.cw.events.retrying(state.record)

    def on_oom_killed(self, lease_id: str, message: str) -> None:
        """Our raylet (or one we were spilled to) is about to kill this lease's worker for memory:
        remember why, for the error if the task has no retries left."""
        for q in self.queues.values():
            for lease in q.leases:
                if lease.lease_id == lease_id:
                    lease.oom_message = message
                    return

    def _linger_done(self, lease: Lease) -> None:
        lease.linger = None
        if lease.busy is None and not lease.queue.pending:
            self._return_lease(lease)
            self._schedule_backlog_report(lease.queue)

    def _should_retry(self, state: TaskState, error: BaseException) -> bool:
        if state.retries_left == 0 or state.cancelled or not isinstance(error, TaskError):
            return False
        allowed = state.retry_exceptions
        if allowed is True:
            return True
        if isinstance(allowed, list):
            return isinstance(error.cause, tuple(allowed))
        return False

    def _finish(
        self,
        state: TaskState,
        reply: dict[str, Any] | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.by_task.pop(state.spec["task_id"], None)
        refs = self.cw.refs
        self._settle_borrows(state, reply)
        if reply is not None and reply.get("error") is None:
            for object_id, inline, location, size, contains in reply["returns"]:
                if location is not None and state.retries_left != 0 and "actor_id" not in state.spec:
                    self.lineage[object_id] = state  # can be rebuilt by running the task again
                refs.complete(object_id, inline=inline, location=location, size=size, contains=contains)
        else:
            err = error if error is not None else reply["error"]  # type: ignore[index]
            for object_id in state.return_ids:
                refs.complete(object_id, error=err)
        if state.ref_args:
            refs.remove_submitted(state.ref_args)
        if state.record is not None:
            self.cw.events.ended(state.record, error if error is not None
                                 else (reply or {}).get("error"))
        stream = self.streams.pop(state.spec["task_id"], None)
        if stream is not None:
            failed = error if error is not None else (reply or {}).get("error")
            on_end(self.cw, state.spec["task_id"], stream, failed)

    def on_stream_item(self, task_id: str, item: tuple[Any, ...]) -> None:
        """A value a generator task yielded, ahead of its reply."""
        stream = self.streams.get(task_id)
        if stream is not None:
            on_item(self.cw, stream, item)

    def _settle_borrows(self, state: TaskState, reply: dict[str, Any] | None) -> None:
        """The task is over: the worker now borrows what it kept of the refs nested in its
        arguments. Refs we own: record it. Refs we only borrowed: register the worker with their
        owner first, then drop the hold we took at submit (see remote_function.encode_args)."""
        kept = dict(reply.get("borrowed", ())) if reply is not None else {}
        borrower = reply.get("borrower", "") if reply is not None else ""
        for object_id, owner in state.spec.get("nested", ()):
            if owner == self.cw.address:
                if object_id in kept:
                    self.cw.refs.add_borrower(object_id, borrower)
            elif object_id in kept:
                asyncio.ensure_future(self._hand_over_borrow(object_id, owner, borrower))
            else:
                self.cw.refs.drop_hold(object_id, owner)

    async def _hand_over_borrow(self, object_id: str, owner: str, borrower: str) -> None:
        try:
            await self.cw.ask(owner, "add_borrower", (object_id, borrower))
        except (ConnectionLost, OSError):
            pass  # the owner is gone: nothing to keep alive there
        self.cw.refs.drop_hold(object_id, owner)

    def reconstruct(self, object_id: str) -> bool:
        """Run again the task that made a lost object (on the I/O thread). False without lineage."""
        state = self.lineage.pop(object_id, None)
        if state is None:
            return False
        for other in state.return_ids:
            self.lineage.pop(other, None)
            self.cw.refs.reset(other)
        self._retry(state)
        state.lease = None
        self.by_task[state.spec["task_id"]] = state
        if state.ref_args:
            self.cw.refs.add_submitted(state.ref_args)
        for object_id, owner in state.spec.get("nested", ()):
            self.cw.refs.hold(object_id, owner)
        self._pump(self._enqueue(state))
        return True

    # -- cancel -------------------------------------------------------------------------------------
    def cancel(self, task_id: str, force: bool) -> None:
        state = self.by_task.get(task_id)
        if state is None:
            self.cw.actors.cancel(task_id)  # an actor call, or already done
            return
        state.cancelled = True
        for q in self.queues.values():
            if state in q.pending:
                q.pending.remove(state)
                self._finish(
                    state, error=TaskCancelledError(f"task {state.spec['name']} was cancelled")
                )
                return
        lease = state.lease
        if lease is not None:
            if force:
                self._return_lease(lease, kill=True)
                lease.conn.close()
            else:
                lease.conn.send("cancel", task_id)


def _ref_slots(spec: dict[str, Any]) -> list[tuple[tuple[str, Any], ObjectRef]]:
    slots = []
    for i, arg in enumerate(spec["args"]):
        if arg[0] == "ref":
            slots.append((("args", i), arg[1]))
    for k, arg in spec["kwargs"].items():
        if arg[0] == "ref":
            slots.append((("kwargs", k), arg[1]))
    return slots


def _wire_spec(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "fn_bytes"}


def format_remote_error(name: str, exc: BaseException) -> TaskError:
    """Wrap an exception raised by user code. It travels by value inside the TaskError; one that
    cannot be pickled arrives as its traceback text alone (runtime/exceptions.py)."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return TaskError(name, tb, exc)

"""Submitting actor calls: each caller keeps one ordered queue per actor and sends calls straight
to the actor's worker over one connection (so they run in submission order). When the connection
breaks the queue asks the GCS what became of the actor and, as Ray does, fails calls that may not
be resent with ActorDiedError if it is gone for good, else with ActorUnavailableError (it is
restarting, or its fate is unknown); calls with max_task_retries left wait for the restart."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from runtime.exceptions import ActorDiedError, ActorUnavailableError, TaskCancelledError
from runtime.protocol import common_pb2, gcs_pb2
from runtime.protocol.states import TaskStatus
from runtime.task_submitter import TaskState, _ref_slots
from runtime.transport import Connection, ConnectionLost

if TYPE_CHECKING:
    from runtime.core_worker import CoreWorker

# How long a call lost with its connection waits for the GCS to say whether the actor died (then
# ActorDiedError) before it fails with ActorUnavailableError. The GCS hears of a worker's death
# from its raylet within milliseconds here; the margin is for a loaded machine. The wait ends as
# soon as the GCS reports anything new, so only a connection that broke while the actor lives (or
# a node not yet declared dead) waits this long. (Ray: timeout_ms_task_wait_for_death_info, 1 s.)
FATE_GRACE_S = 5.0


@dataclass(eq=False)
class LostCall:
    """A call whose connection broke before its reply: it may or may not have run."""

    state: TaskState
    seen_version: int  # the actor record's version when that connection was made
    cause: str
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class ActorQueue:
    actor_id: str
    conn: Connection | None = None
    version: int = 0  # of the last actor record the GCS sent
    connected_version: int = 0  # of the record `conn` was made from
    resolving: bool = False
    restarting: bool = False  # the GCS says RESTARTING: calls that may not retry fail at once
    dead_error: ActorDiedError | None = None
    pending: deque[TaskState] = field(default_factory=deque)
    lost: list[LostCall] = field(default_factory=list)
    inflight: int = 0
    node_id: str = ""  # where the actor runs, as last learned


class ActorSubmitter:
    def __init__(self, cw: CoreWorker) -> None:
        self.cw = cw
        self.queues: dict[str, ActorQueue] = {}
        self.sent: dict[str, tuple[Connection, TaskState]] = {}  # task id -> calls not answered

    def submit(self, actor_id: str, state: TaskState) -> None:
        if state.task_events:
            state.record = self.cw.events.new(state.spec, state.shape, self.cw.current_task_id)
        self.cw.call_soon(self._enqueue, actor_id, state)

    def _enqueue(self, actor_id: str, state: TaskState) -> None:
        aq = self.queues.get(actor_id)
        if aq is None:
            aq = self.queues[actor_id] = ActorQueue(actor_id)
        aq.pending.append(state)
        for where, ref in _ref_slots(state.spec):
            state.unresolved += 1
            self.cw.tasks.resolve_arg(state, where, ref, lambda: self._pump(aq))
        if state.record is not None:
            self.cw.events.waiting(state.record, for_args=state.unresolved > 0)
        self._pump(aq)

    def _pump(self, aq: ActorQueue) -> None:
        if aq.dead_error is not None:
            self._fail_all(aq, aq.dead_error)
            return
        if aq.conn is None or not aq.conn.is_open:
            aq.conn = None
            if aq.restarting:
                self._fail_unretriable(aq)
            if not aq.resolving and not self.cw.closed:  # (a connection closed by shutdown)
                aq.resolving = True
                asyncio.ensure_future(self._resolve_actor(aq))
            return
        while aq.pending and aq.pending[0].unresolved == 0:
            self._send(aq, aq.pending.popleft())

    def _send(self, aq: ActorQueue, state: TaskState) -> None:
        assert aq.conn is not None
        conn = aq.conn
        if state.record is not None:
            self.cw.events.started(state.record, aq.node_id, "", TaskStatus.SUBMITTED_TO_WORKER)
        try:
            fut = conn.request("push", state.spec)
        except ConnectionLost as exc:
            fut = self.cw.loop.create_future()
            fut.set_exception(exc)
        aq.inflight += 1
        self.sent[state.spec["task_id"]] = (conn, state)
        fut.add_done_callback(lambda f: self._on_reply(aq, conn, state, f))

    def _on_reply(
        self, aq: ActorQueue, conn: Connection, state: TaskState, fut: asyncio.Future[Any]
    ) -> None:
        aq.inflight -= 1
        self.sent.pop(state.spec["task_id"], None)
        exc = fut.exception()
        if exc is not None and state.cancelled:  # cancelled, then its connection broke
            self.cw.tasks._finish(state, error=TaskCancelledError(
                f"task {state.spec['name']} was cancelled"))
            return
        if exc is None:
            self.cw.tasks._finish(state, reply=fut.result())
            return
        if aq.conn is conn:
            aq.conn = None
        if state.retries_left != 0:
            self.cw.tasks._retry(state)
            aq.pending.appendleft(state)
        else:
            self._await_fate(aq, state, str(exc))
        self._pump(aq)

    # -- failing calls the way Ray does ---------------------------------------------------------

    def _await_fate(self, aq: ActorQueue, state: TaskState, cause: str) -> None:
        """Hold a lost call that may not be resent until the GCS says whether the actor died."""
        lost = LostCall(state, aq.connected_version, cause)
        lost.timer = self.cw.loop.call_later(FATE_GRACE_S, self._settle_lost, aq, lost, None)
        aq.lost.append(lost)

    def _settle_lost(
        self, aq: ActorQueue, lost: LostCall, error: BaseException | None, died_of: str = ""
    ) -> None:
        """Fail a lost call with `error`, or (None) as unavailable: the actor may still be there
        (`died_of`: why its worker died, when the GCS knows it is restarting)."""
        if lost not in aq.lost:
            return
        aq.lost.remove(lost)
        if lost.timer is not None:
            lost.timer.cancel()
        self.cw.tasks._finish(lost.state, error=error or ActorUnavailableError(
            f"actor {aq.actor_id} is unavailable: the connection to it broke while running "
            f"{lost.state.spec['name']} ({lost.cause}), which may or may not have run; "
            + (f"it restarts after its worker died: {died_of}; " if died_of else
               "the actor may be restarting: ")
            + "call again later, or set max_task_retries to resend calls"
        ))

    def _fail_unretriable(self, aq: ActorQueue) -> None:
        """The actor is restarting: calls that may not be resent fail now instead of waiting."""
        waiting = [state for state in aq.pending if state.retries_left == 0]
        if not waiting:
            return
        aq.pending = deque(state for state in aq.pending if state.retries_left != 0)
        for state in waiting:
            self.cw.tasks._finish(state, error=ActorUnavailableError(
                f"actor {aq.actor_id} is unavailable: it is restarting, so {state.spec['name']} "
                "was not sent; call again once it is back, or set max_task_retries to wait for it"
            ))

    def _fail_all(self, aq: ActorQueue, error: ActorDiedError) -> None:
        while aq.pending:
            self.cw.tasks._finish(aq.pending.popleft(), error=error)
        for lost in list(aq.lost):
            self._settle_lost(aq, lost, error)

    def _learned(self, aq: ActorQueue, actor: Any) -> None:
        """The GCS sent a record newer than a lost call's connection: the actor is not dead (that
        is dead_error's case), so those calls are unavailable, not died."""
        aq.restarting = actor.state == common_pb2.ActorInfo.RESTARTING
        # a record newer than the lost call's connection, of an actor that restarted: that death
        # broke the call (RESTARTING may already be ALIVE again by the time we look)
        died_of = actor.death_cause if actor.num_restarts > 0 else ""
        for lost in [lost for lost in aq.lost if actor.version > lost.seen_version]:
            self._settle_lost(aq, lost, None, died_of)
        if aq.restarting:
            self._fail_unretriable(aq)

    # -- finding the actor ----------------------------------------------------------------------

    async def _resolve_actor(self, aq: ActorQueue) -> None:
        """Learn where the actor runs (long-polling the GCS for changes) and connect, or that it
        is dead. The first look answers at once, so a broken connection to an actor that still
        runs is made again without waiting for a change."""
        cw = self.cw
        aq.version = 0
        try:
            while True:
                request = gcs_pb2.GetActorRequest(
                    actor_id=aq.actor_id, after_version=aq.version, timeout_s=10
                )
                try:
                    reply = await cw.loop.run_in_executor(
                        None, cw.gcs_call, "GetActor", request, 15
                    )
                except grpc.RpcError:
                    await asyncio.sleep(0.2)
                    continue
                if not reply.found:
                    aq.dead_error = ActorDiedError(f"actor {aq.actor_id} is unknown to the GCS")
                    break
                actor = reply.actor
                aq.version = actor.version
                if actor.state == common_pb2.ActorInfo.DEAD:
                    aq.dead_error = ActorDiedError(
                        f"actor {actor.class_name}({aq.actor_id}) is dead: "
                        f"{actor.death_cause or 'unknown cause'}"
                    )
                    break
                self._learned(aq, actor)
                aq.node_id = actor.node_id
                if actor.state == common_pb2.ActorInfo.ALIVE and actor.address:
                    if await self._connect(aq, actor.address, actor.version):
                        break
        finally:
            aq.resolving = False
        self._pump(aq)

    async def _connect(self, aq: ActorQueue, address: str, version: int) -> bool:
        try:
            aq.conn = await self.cw.connection(address)
        except (ConnectionLost, OSError):
            aq.version = 0  # its worker may be gone before the GCS knows: look again
            await asyncio.sleep(0.1)
            return False
        aq.connected_version = version
        for lost in list(aq.lost):  # it runs: calls lost with the old connection stay unknown
            self._settle_lost(aq, lost, None)
        return True

    def owns(self, task_id: str) -> bool:
        """Whether `task_id` is an actor call of ours not answered yet."""
        return task_id in self.sent or any(
            s.spec["task_id"] == task_id for aq in self.queues.values() for s in aq.pending)

    def cancel(self, task_id: str) -> None:
        """Ray's semantics: a call not sent yet is dropped (TaskCancelledError); a sent one is
        cancelled by its actor (an async call gets CancelledError, a sync one is flagged for
        is_canceled() and never interrupted)."""
        for aq in self.queues.values():
            for state in aq.pending:
                if state.spec["task_id"] == task_id:
                    aq.pending.remove(state)
                    state.cancelled = True
                    self.cw.tasks._finish(state, error=TaskCancelledError(
                        f"task {state.spec['name']} was cancelled"))
                    return
        sent = self.sent.get(task_id)
        if sent is not None:
            conn, state = sent
            state.cancelled = True
            if conn.is_open:
                conn.send("cancel", task_id)

    def mark_dead(self, actor_id: str, error: ActorDiedError) -> None:
        """This caller killed the actor: fail queued and later calls at once."""
        aq = self.queues.get(actor_id)
        if aq is None:
            aq = self.queues[actor_id] = ActorQueue(actor_id)
        aq.dead_error = error
        self._pump(aq)

"""Submitting actor calls: each caller keeps one ordered queue per actor and sends calls straight
to the actor's worker over one connection (so they run in submission order). When the actor dies
the queue asks the GCS where it restarted, or fails the calls with ActorDiedError."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from runtime.exceptions import ActorDiedError
from runtime.protocol import common_pb2, gcs_pb2
from runtime.task_submitter import TaskState, _ref_slots
from runtime.transport import Connection, ConnectionLost

if TYPE_CHECKING:
    from runtime.core_worker import CoreWorker


@dataclass(eq=False)
class ActorQueue:
    actor_id: str
    conn: Connection | None = None
    version: int = 0
    resolving: bool = False
    dead_error: ActorDiedError | None = None
    pending: deque[TaskState] = field(default_factory=deque)
    inflight: int = 0


class ActorSubmitter:
    def __init__(self, cw: CoreWorker) -> None:
        self.cw = cw
        self.queues: dict[str, ActorQueue] = {}

    def submit(self, actor_id: str, state: TaskState) -> None:
        self.cw.call_soon(self._enqueue, actor_id, state)

    def _enqueue(self, actor_id: str, state: TaskState) -> None:
        aq = self.queues.get(actor_id)
        if aq is None:
            aq = self.queues[actor_id] = ActorQueue(actor_id)
        aq.pending.append(state)
        for where, ref in _ref_slots(state.spec):
            state.unresolved += 1
            self.cw.tasks.resolve_arg(state, where, ref, lambda: self._pump(aq))
        self._pump(aq)

    def _pump(self, aq: ActorQueue) -> None:
        if aq.dead_error is not None:
            while aq.pending:
                self.cw.tasks._finish(aq.pending.popleft(), error=aq.dead_error)
            return
        if aq.conn is None or not aq.conn.is_open:
            aq.conn = None
            if not aq.resolving and not self.cw.closed:  # (a connection closed by shutdown)
                aq.resolving = True
                asyncio.ensure_future(self._resolve_actor(aq))
            return
        while aq.pending and aq.pending[0].unresolved == 0:
            self._send(aq, aq.pending.popleft())

    def _send(self, aq: ActorQueue, state: TaskState) -> None:
        assert aq.conn is not None
        conn = aq.conn
        try:
            fut = conn.request("push", state.spec)
        except ConnectionLost as exc:
            fut = self.cw.loop.create_future()
            fut.set_exception(exc)
        aq.inflight += 1
        fut.add_done_callback(lambda f: self._on_reply(aq, conn, state, f))

    def _on_reply(
        self, aq: ActorQueue, conn: Connection, state: TaskState, fut: asyncio.Future[Any]
    ) -> None:
        aq.inflight -= 1
        exc = fut.exception()
        if exc is None:
            self.cw.tasks._finish(state, reply=fut.result())
            return
        if aq.conn is conn:
            aq.conn = None
        if state.retries_left != 0:
            state.retries_left -= 1
            aq.pending.appendleft(state)
        else:
            self.cw.tasks._finish(
                state,
                error=ActorDiedError(
                    f"actor {aq.actor_id} died while running {state.spec['name']} ({exc}); "
                    "set max_task_retries to retry calls on a restarted actor"
                ),
            )
        self._pump(aq)

    async def _resolve_actor(self, aq: ActorQueue) -> None:
        cw = self.cw
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
                if actor.state == common_pb2.ActorInfo.ALIVE and actor.address:
                    try:
                        aq.conn = await cw.connection(actor.address)
                        break
                    except (ConnectionLost, OSError):
                        aq.version = 0
                        await asyncio.sleep(0.1)
        finally:
            aq.resolving = False
        self._pump(aq)

    def mark_dead(self, actor_id: str, error: ActorDiedError) -> None:
        """This caller killed the actor: fail queued and later calls at once."""
        aq = self.queues.get(actor_id)
        if aq is None:
            aq = self.queues[actor_id] = ActorQueue(actor_id)
        aq.dead_error = error
        self._pump(aq)

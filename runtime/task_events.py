"""What an owner records of the tasks it submits, for `rayctl list tasks` and `rayctl summary
tasks`: each task's status, attempt, node and worker, and its error, sent to the GCS in a batch
about once a second (runtime/gcs/task_events.py keeps them, bounded).

Everything here runs on the owner's I/O thread, except `new`, which builds a record from the
submitting thread. A task that changes several times between two batches is sent once, as it is
at the batch; a burst bigger than the buffer loses events (counted, and the listing says so),
never work.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runtime.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    ObjectLostError,
    OutOfMemoryError,
    OwnerDiedError,
    TaskCancelledError,
    TaskError,
    WorkerCrashedError,
)
from runtime.protocol import common_pb2, gcs_pb2
from runtime.protocol.states import TaskStatus, TaskType

if TYPE_CHECKING:
    from runtime.core_worker import CoreWorker

FLUSH_S = 1.0
MAX_BUFFERED = 100_000  # changed records waiting for the next batch
BATCH_EVENTS = 2_000  # per AddTaskEvents call (well under the GCS's 4 MiB message cap)
MAX_ERROR_CHARS = 2_000

# Ray's error types, by the exception an owner fails a task with (most specific first)
_ERROR_TYPES: tuple[tuple[type[BaseException], str], ...] = (
    (TaskCancelledError, "TASK_CANCELLED"),
    (OutOfMemoryError, "OUT_OF_MEMORY"),
    (WorkerCrashedError, "WORKER_DIED"),
    (ActorDiedError, "ACTOR_DIED"),
    (ActorUnavailableError, "ACTOR_UNAVAILABLE"),
    (OwnerDiedError, "OWNER_DIED"),
    (ObjectLostError, "OBJECT_LOST"),
    (TaskError, "TASK_EXECUTION_EXCEPTION"),
)


def error_type(error: BaseException) -> str:
    for cls, name in _ERROR_TYPES:
        if isinstance(error, cls):
            return name
    return "UNKNOWN"


@dataclass(slots=True, eq=False)
class TaskRecord:
    task_id: str
    name: str
    type: TaskType
    parent_task_id: str
    actor_id: str
    resources: dict[str, float]
    submitted_at: float
    status: TaskStatus = TaskStatus.PENDING_ARGS_AVAIL
    attempt: int = 0
    node_id: str = ""
    worker_id: str = ""
    started_at: float = 0.0
    ended_at: float = 0.0
    error_type: str = ""
    error_message: str = ""

    def to_wire(self, job_id: str) -> Any:
        return common_pb2.TaskEvent(
            task_id=self.task_id, attempt=self.attempt, name=self.name, status=self.status.wire,
            type=self.type.wire, job_id=job_id, actor_id=self.actor_id,
            parent_task_id=self.parent_task_id, node_id=self.node_id, worker_id=self.worker_id,
            error_type=self.error_type, error_message=self.error_message,
            submitted_at=self.submitted_at, started_at=self.started_at, ended_at=self.ended_at,
            resources=self.resources,
        )


class TaskEvents:
    """One owner's buffer of changed task records and the timer that sends them."""

    def __init__(self, cw: CoreWorker, flush_s: float = FLUSH_S,
                 max_buffered: int = MAX_BUFFERED) -> None:
        self.cw = cw
        self.flush_s = flush_s
        self.max_buffered = max_buffered
        self._changed: dict[str, TaskRecord] = {}
        self._dropped = 0
        self._timer: Any = None

    def new(self, spec: dict[str, Any], shape: dict[str, float], parent_task_id: str) -> TaskRecord:
        """A record for a task being submitted (any thread; `changed` publishes it)."""
        actor_id = spec.get("actor_id", "")
        return TaskRecord(spec["task_id"], spec["name"],
                          TaskType.ACTOR_TASK if actor_id else TaskType.NORMAL_TASK,
                          parent_task_id, actor_id, shape, time.time())

    # -- transitions (the I/O thread) -----------------------------------------------------------
    def waiting(self, record: TaskRecord, for_args: bool) -> None:
        record.status = (TaskStatus.PENDING_ARGS_AVAIL if for_args
                         else TaskStatus.PENDING_NODE_ASSIGNMENT)
        self._changed_one(record)

    def retrying(self, record: TaskRecord) -> None:
        record.attempt += 1
        record.status = TaskStatus.PENDING_NODE_ASSIGNMENT
        record.node_id = record.worker_id = ""
        self._changed_one(record)

    def started(self, record: TaskRecord, node_id: str, worker_id: str,
                status: TaskStatus = TaskStatus.RUNNING) -> None:
        record.status = status
        record.node_id, record.worker_id = node_id, worker_id
        record.started_at = time.time()
        self._changed_one(record)

    def ended(self, record: TaskRecord, error: BaseException | None) -> None:
        record.ended_at = time.time()
        if error is None:
            record.status = TaskStatus.FINISHED
        else:
            record.status = TaskStatus.FAILED
            record.error_type = error_type(error)
            record.error_message = str(error)[:MAX_ERROR_CHARS]
        self._changed_one(record)

    def _changed_one(self, record: TaskRecord) -> None:
        changed = self._changed
        if record.task_id not in changed:
            if len(changed) >= self.max_buffered:
                self._dropped += 1
                return
            changed[record.task_id] = record
            if self._timer is None:
                self._timer = self.cw.loop.call_later(self.flush_s, self.flush)

    # -- sending ----------------------------------------------------------------------------------
    def flush(self) -> None:
        """Send what changed since the last batch (the I/O thread; does not wait for the GCS)."""
        self._timer = None
        for request in self._take():
            lost = len(request.events) + request.dropped
            # a GCS restarting loses this batch: counted, never retried (events are not work)
            self.cw.gcs_call_async("AddTaskEvents", request, timeout=10,
                                   on_error=functools.partial(self._lost, lost))

    def _lost(self, n: int, error: BaseException) -> None:  # (a gRPC thread)
        if not self.cw.closed:
            self.cw.call_soon(self._count_dropped, n)

    def _count_dropped(self, n: int) -> None:
        self._dropped += n  # the next batch tells the GCS
        if self._timer is None and not self.cw.closed:
            self._timer = self.cw.loop.call_later(self.flush_s, self.flush)

    def flush_now(self, timeout: float = 2.0) -> None:
        """Send what is buffered and wait for it (a user thread, at shutdown): the last tasks of a
        short driver are listed too. A GCS that does not answer in time loses them."""
        async def take() -> list[Any]:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return self._take()

        try:
            requests = self.cw.run(take(), timeout=timeout)
        except Exception:  # noqa: BLE001 - the I/O thread is stuck or gone
            return
        for request in requests:
            try:
                self.cw.gcs_call("AddTaskEvents", request, timeout=timeout, retry_s=0)
            except Exception:  # noqa: BLE001 - the GCS is gone: the events go with it
                return

    def _take(self) -> list[Any]:
        records, self._changed = list(self._changed.values()), {}
        dropped, self._dropped = self._dropped, 0
        job_id = self.cw.job_id
        requests = []
        for start in range(0, len(records), BATCH_EVENTS):
            batch = records[start:start + BATCH_EVENTS]
            requests.append(gcs_pb2.AddTaskEventsRequest(
                events=[r.to_wire(job_id) for r in batch], dropped=dropped if start == 0 else 0))
        if not records and dropped:
            requests.append(gcs_pb2.AddTaskEventsRequest(dropped=dropped))
        return requests

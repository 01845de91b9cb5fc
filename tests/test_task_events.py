"""The GCS's bounded record of tasks (runtime/gcs/task_events.py): what `rayctl list tasks` and
`rayctl summary tasks` read stays bounded however many tasks run, keeps running tasks over ended
ones, says how many it dropped, and never steps a task back from its end when owners' batches
arrive out of order."""

from __future__ import annotations

from typing import Any

from runtime.gcs.task_events import MAX_REPLY_BYTES, TaskEventStore
from runtime.protocol import common_pb2, gcs_pb2
from runtime.protocol.states import TaskStatus, TaskType

RUNNING = TaskStatus.RUNNING.wire
FINISHED = TaskStatus.FINISHED.wire


def _event(task_id: str, status: Any, attempt: int = 0, name: str = "f",
           error: str = "") -> common_pb2.TaskEvent:
    return common_pb2.TaskEvent(task_id=task_id, status=status, attempt=attempt, name=name,
                                type=TaskType.NORMAL_TASK.wire, error_message=error)


def _add(store: TaskEventStore, *events: common_pb2.TaskEvent, dropped: int = 0) -> None:
    store.add(gcs_pb2.AddTaskEventsRequest(events=events, dropped=dropped))


def test_bounded_keeps_running_tasks_and_counts_what_it_dropped() -> None:
    store = TaskEventStore(max_tasks=10)
    _add(store, *[_event(f"run{i}", RUNNING) for i in range(3)])
    _add(store, *[_event(f"done{i}", FINISHED) for i in range(20)], dropped=5)
    reply = store.list(limit=100)
    assert reply.total == 10 and len(store) == 10
    assert reply.dropped == 5 + 13  # the owner's 5, and the 13 oldest ended tasks here
    ids = [t.task_id for t in reply.tasks]
    assert ids[:3] == ["run2", "run1", "run0"]  # not ended first, newest first
    assert ids[3:] == [f"done{i}" for i in range(19, 12, -1)]
    assert dict(reply.by_status) == {RUNNING: 3, FINISHED: 7}


def test_a_late_batch_never_steps_a_task_back() -> None:
    store = TaskEventStore()
    _add(store, _event("t", FINISHED))
    _add(store, _event("t", RUNNING))  # sent earlier, arrived later
    assert [t.status for t in store.list(0).tasks] == [FINISHED]
    _add(store, _event("t", RUNNING, attempt=1))  # a new attempt (the object was lost)
    assert [(t.status, t.attempt) for t in store.list(0).tasks] == [(RUNNING, 1)]
    _add(store, _event("t", FINISHED, attempt=0))
    assert [(t.status, t.attempt) for t in store.list(0).tasks] == [(RUNNING, 1)]


def test_summary_counts_every_task_by_name_and_state() -> None:
    store = TaskEventStore()
    _add(store, *[_event(f"a{i}", FINISHED, name="square") for i in range(5)],
         _event("b", RUNNING, name="square", attempt=2), _event("c", FINISHED, name="other"))
    reply = store.summarize()
    groups = {g.name: (dict(g.by_status), g.retries) for g in reply.groups}
    assert groups == {"square": ({FINISHED: 5, RUNNING: 1}, 2), "other": ({FINISHED: 1}, 0)}
    assert reply.total == 7 and not reply.tasks


def test_a_listing_fits_in_one_grpc_message() -> None:
    store = TaskEventStore(max_tasks=100_000)
    _add(store, *[_event(f"t{i}", FINISHED, error="x" * 2000) for i in range(2000)])
    reply = store.list(limit=10_000)
    assert 0 < len(reply.tasks) < 2000 and reply.total == 2000
    assert reply.ByteSize() <= MAX_REPLY_BYTES + 1024

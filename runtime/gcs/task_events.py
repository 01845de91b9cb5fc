"""The GCS's record of tasks, from their owners' batches (runtime/task_events.py), for `rayctl
list tasks` and `rayctl summary tasks`. Kept in the GCS's memory only and bounded: past
`max_tasks` the oldest ended tasks go first, then the oldest of any kind; every task dropped is
counted, and the listing says how many. (Ray keeps task events the same way: in the GCS's memory,
bounded, lost with it.)"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from runtime.protocol import common_pb2, gcs_pb2

MAX_TASKS = 20_000
MAX_REPLY_BYTES = 3 * 1024 * 1024  # under the 4 MiB a gRPC client takes by default
DEFAULT_LIMIT = 1_000

_ENDED = frozenset((common_pb2.TaskEvent.FINISHED, common_pb2.TaskEvent.FAILED))


class TaskEventStore:
    def __init__(self, max_tasks: int = MAX_TASKS) -> None:
        self.max_tasks = max_tasks
        self._running: OrderedDict[str, Any] = OrderedDict()  # not ended, oldest first
        self._ended: OrderedDict[str, Any] = OrderedDict()  # ended, in the order they ended
        self.dropped = 0  # tasks dropped here or by their owners

    def __len__(self) -> int:
        return len(self._running) + len(self._ended)

    def add(self, request: Any) -> None:
        self.dropped += request.dropped
        for event in request.events:
            self._add(event)
        while len(self) > self.max_tasks:
            (self._ended or self._running).popitem(last=False)
            self.dropped += 1

    def _add(self, event: Any) -> None:
        task_id = event.task_id
        old = self._ended.get(task_id) or self._running.get(task_id)
        # batches from one owner may arrive out of order: never step back from an attempt's end
        if old is not None and (event.attempt < old.attempt or (
                event.attempt == old.attempt and old.status in _ENDED
                and event.status not in _ENDED)):
            return
        self._running.pop(task_id, None)
        self._ended.pop(task_id, None)
        (self._ended if event.status in _ENDED else self._running)[task_id] = event

    def summarize(self) -> Any:
        """Every task held, counted by function (or actor method) and status."""
        reply = gcs_pb2.ListTasksReply(total=len(self), dropped=self.dropped)
        groups: dict[tuple[str, int], Any] = {}
        for table in (self._running, self._ended):
            for event in table.values():
                reply.by_status[event.status] += 1
                group = groups.get((event.name, event.type))
                if group is None:
                    group = groups[event.name, event.type] = gcs_pb2.TaskGroup(
                        name=event.name, type=event.type)
                group.by_status[event.status] += 1
                group.retries += event.attempt
        reply.groups.extend(groups[key] for key in sorted(groups))
        return reply

    def list(self, limit: int) -> Any:
        """Newest first: the tasks not ended, then the ended ones (most recently ended first)."""
        limit = limit if limit > 0 else DEFAULT_LIMIT
        reply = gcs_pb2.ListTasksReply(total=len(self), dropped=self.dropped)
        for table in (self._running, self._ended):
            for event in table.values():
                reply.by_status[event.status] += 1
        size = 0
        for table in (self._running, self._ended):
            for event in reversed(table.values()):
                if len(reply.tasks) >= limit:
                    return reply
                size += event.ByteSize() + 4
                if size > MAX_REPLY_BYTES:
                    return reply
                reply.tasks.append(event)
        return reply

"""Workloads the chaos scenarios run while they kill something: a stream of retryable tasks
whose every result is checked and whose completion times are kept (the first success after a
kill is the recovery), on its own thread so the scenario can kill while it runs."""

from __future__ import annotations

import threading
import time
from typing import Any


class TaskStream:
    """`count` tasks of `task_s` seconds each, max_retries high enough to ride through kills.

    `lost` counts tasks that raised or returned a wrong value (0 for retryable work)."""

    def __init__(
        self,
        count: int,
        task_s: float,
        num_cpus: float = 1,
        timeout_s: float = 120,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.count, self.task_s, self.num_cpus, self.timeout_s = count, task_s, num_cpus, timeout_s
        self.options = options or {}
        self.done_at: list[float] = []
        self.lost = 0
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="chaos-task-stream", daemon=True)

    def start(self) -> TaskStream:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(self.timeout_s + 30)
        if self._thread.is_alive():
            self.errors.append("the stream did not finish")

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def completed(self) -> int:
        return len(self.done_at)

    def first_success_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first task completed after it (None: none was)."""
        later = [t for t in self.done_at if t >= moment]
        return min(later) - moment if later else None

    def _run(self) -> None:
        import runtime as rt

        @rt.remote(num_cpus=self.num_cpus, max_retries=20, **self.options)
        def square(i: int, task_s: float) -> int:
            time.sleep(task_s)
            return i * i

        pending = {square.remote(i, self.task_s): i for i in range(self.count)}
        deadline = time.monotonic() + self.timeout_s
        while pending and time.monotonic() < deadline:
            # everything ready within 50 ms: completion times are kept to that resolution
            ready, _ = rt.wait(list(pending), num_returns=len(pending), timeout=0.05)
            for ref in ready:
                i = pending.pop(ref)
                self._check(rt, ref, i)
        if pending:  # a hang is a loss too, named so that the row says so
            self.errors.append(f"{len(pending)} tasks still pending after {self.timeout_s:g} s")
            self.lost += len(pending)

    def _check(self, rt: Any, ref: Any, i: int) -> None:
        try:
            value = rt.get(ref, timeout=30)
        except Exception as exc:  # noqa: BLE001 - a lost result is what we count
            self.lost += 1
            self.errors.append(f"task {i}: {type(exc).__name__}: {exc}"[:300])
            return
        if value != i * i:
            self.lost += 1
            self.errors.append(f"task {i}: returned {value!r}")
        else:
            self.done_at.append(time.monotonic())

"""The fast chaos scenarios, in the default run: each kills one process with SIGKILL mid-workload
on a real cluster and asserts that no result is lost, no process, slot or shm byte is left
after teardown, and recovery took at most its limit. The full set is scripts/chaos.sh."""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Callable

import launcher_scenarios
import pytest
import runtime_scenarios
from harness import ScenarioResult

FAST: dict[str, Callable[[str], ScenarioResult]] = {
    "worker": lambda root: runtime_scenarios.worker_killed(
        root, tasks=300, task_s=0.02, timeout_s=30
    ),
    "raylet": runtime_scenarios.raylet_killed,
    "gcs": runtime_scenarios.gcs_killed,
    "monitor": lambda root: launcher_scenarios.monitor_killed(root, at_slot=False),
    "down": lambda root: launcher_scenarios.down_interrupted(root, 1.0, signal.SIGINT),
}


@pytest.mark.parametrize("kind", list(FAST))
def test_a_killed_process_loses_nothing_and_leaks_nothing(kind: str) -> None:
    result = FAST[kind](tempfile.mkdtemp(prefix="rayctl-chaos-"))
    print(result.line())
    assert result.passed, result.line()

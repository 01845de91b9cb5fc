"""The memory monitor's policy: which running worker to kill when the node is over its threshold.

As Ray's OOM killer (RAY_memory_usage_threshold 0.95, RAY_memory_monitor_refresh_ms 250):
1. tasks with retries left, from the owner with the most such tasks (that owner's work survives
   a retry best, and one greedy owner cannot starve the others), newest started first;
2. then actors with restarts left, newest first;
3. then, as the last resort, the newest of the rest (its error says it was not retryable).
The choice is a pure function; the raylet's loop reads memory and acts.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from runtime.raylet.node_memory import MemorySnapshot

DEFAULT_USAGE_THRESHOLD = 0.95
DEFAULT_REFRESH_MS = 250


class WorkKind(enum.StrEnum):
    TASK = "task"
    ACTOR = "actor"


class VictimClass(enum.IntEnum):
    """Why a victim was picked; lower is picked first."""

    RETRIABLE_TASK = 0
    RESTARTABLE_ACTOR = 1
    LAST_RESORT = 2


@dataclass(frozen=True, slots=True)
class RunningWork:
    """One busy worker as the monitor sees it."""

    worker_pid: int
    kind: WorkKind
    owner_id: str
    started_at: float  # monotonic seconds when its current task or actor started
    retriable: bool  # a task with retries left, or an actor with restarts left
    name: str = ""


@dataclass(frozen=True, slots=True)
class Victim:
    work: RunningWork
    why: VictimClass


def _class_of(work: RunningWork) -> VictimClass:
    if not work.retriable:
        return VictimClass.LAST_RESORT
    if work.kind is WorkKind.TASK:
        return VictimClass.RETRIABLE_TASK
    return VictimClass.RESTARTABLE_ACTOR


def pick_victim(running: Sequence[RunningWork]) -> Victim | None:
    """The worker to kill, or None when nothing runs. No I/O, no clock."""
    if not running:
        return None
    best = min(_class_of(w) for w in running)
    group = [w for w in running if _class_of(w) is best]
    if best is VictimClass.RETRIABLE_TASK:
        per_owner = Counter(w.owner_id for w in group)
        # Ties between owners go to the owner whose newest task is newest (deterministic).
        owner = max(
            per_owner,
            key=lambda o: (per_owner[o], max(w.started_at for w in group if w.owner_id == o)),
        )
        group = [w for w in group if w.owner_id == owner]
    return Victim(max(group, key=lambda w: (w.started_at, w.worker_pid)), best)


def over_threshold(memory: MemorySnapshot, threshold: float) -> bool:
    """True when the node uses more than `threshold` of its memory; 0 disables the monitor."""
    return 0 < threshold and memory.fraction > threshold


def oom_message(node_id: str, memory: MemorySnapshot, threshold: float, victim: Victim) -> str:
    """The task's error text: where, how much, and how to avoid it."""
    gib = 1024**3
    what = victim.work.name or f"{victim.work.kind} on worker pid {victim.work.worker_pid}"
    return (
        f"{what} was killed by the memory monitor of node {node_id}: the node used "
        f"{memory.used_bytes / gib:.2f} GiB of {memory.total_bytes / gib:.2f} GiB "
        f"({memory.fraction:.0%}), over the threshold of {threshold:.0%}. "
        "To avoid it, run fewer tasks at once (ask for more num_cpus or memory resources per "
        "task), give the node more memory, or raise RAYCTL_MEMORY_USAGE_THRESHOLD on the node "
        "(0 turns the monitor off)."
    )

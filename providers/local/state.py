"""The local provider's per-cluster state file: one JSON document listing every slot and the
processes started in it, written atomically under an fcntl lock (a monitor and a CLI may both
touch it at once)."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from providers.base import ProviderError

STATE_VERSION = 1
SLOT_RUNNING = "running"
SLOT_TERMINATING = "terminating"


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """A process group the runner started: its leader's pid (= pgid) and start time."""

    pgid: int
    create_time: float  # psutil's create_time of the leader, to tell a reused pid apart
    command: str = ""


@dataclass(frozen=True, slots=True)
class SlotRecord:
    id: str
    node_type: str
    tags: dict[str, str]
    state: str
    created_at: float
    processes: tuple[ProcessRecord, ...] = ()

    def with_process(self, process: ProcessRecord) -> SlotRecord:
        return replace(self, processes=(*self.processes, process))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "node_type": self.node_type,
            "tags": dict(self.tags),
            "state": self.state,
            "created_at": self.created_at,
            "processes": [
                {"pgid": p.pgid, "create_time": p.create_time, "command": p.command}
                for p in self.processes
            ],
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> SlotRecord:
        return SlotRecord(
            id=data["id"],
            node_type=data["node_type"],
            tags=dict(data.get("tags", {})),
            state=data.get("state", SLOT_RUNNING),
            created_at=float(data.get("created_at", 0.0)),
            processes=tuple(
                ProcessRecord(int(p["pgid"]), float(p["create_time"]), p.get("command", ""))
                for p in data.get("processes", [])
            ),
        )


@dataclass(slots=True)
class ClusterState:
    """A working copy of the file's content; edit it inside `StateFile.locked()`."""

    next_index: int = 1
    slots: dict[str, SlotRecord] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "next_index": self.next_index,
            "slots": [s.to_json() for s in self.slots.values()],
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> ClusterState:
        slots = [SlotRecord.from_json(s) for s in data.get("slots", [])]
        return ClusterState(int(data.get("next_index", 1)), {s.id: s for s in slots})


class StateFile:
    """`<cluster_dir>/state.json`, guarded by `<cluster_dir>/state.lock`."""

    def __init__(self, cluster_dir: Path) -> None:
        self.cluster_dir = cluster_dir
        self.path = cluster_dir / "state.json"
        self.lock_path = cluster_dir / "state.lock"

    def read(self) -> ClusterState:
        """A consistent snapshot; an absent cluster directory reads as empty."""
        if not self.cluster_dir.exists():
            return ClusterState()
        with self._flock(fcntl.LOCK_SH):
            return self._load()

    @contextmanager
    def locked(self) -> Iterator[ClusterState]:
        """Exclusive read-modify-write: the state yielded is written back on a clean exit."""
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        with self._flock(fcntl.LOCK_EX):
            state = self._load()
            yield state
            self._write(state)

    @contextmanager
    def _flock(self, mode: int) -> Iterator[None]:
        # flock (not lockf): held per open file, so threads of one process exclude each other too.
        with open(self.lock_path, "a+") as handle:
            fcntl.flock(handle, mode)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _load(self) -> ClusterState:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return ClusterState()
        try:
            return ClusterState.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(
                f"local provider state file {self.path} is unreadable ({exc}); move it aside "
                f"and stop the slot processes by hand (see the pids/ files under "
                f"{self.cluster_dir / 'nodes'})"
            ) from exc

    def _write(self, state: ClusterState) -> None:
        # Write a temp file in the same directory then rename: readers see old or new, never half.
        fd, tmp = tempfile.mkstemp(prefix=".state.", suffix=".json", dir=self.cluster_dir)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(state.to_json(), handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

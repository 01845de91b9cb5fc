"""How much memory this node has and uses: its cgroup's limit when it has one, else /proc/meminfo.

Readers are plain callables returning a `MemorySnapshot`, so the raylet's memory monitor takes
one as a constructor argument and a test can hand it a fake (`file_reader`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMINFO = Path("/proc/meminfo")
PROC_CGROUP = Path("/proc/self/cgroup")
# cgroup v1 reports "no limit" as a huge page-aligned number; anything this large is unlimited.
_V1_UNLIMITED_BYTES = 1 << 60


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    used_bytes: int
    total_bytes: int

    @property
    def fraction(self) -> float:
        return self.used_bytes / self.total_bytes if self.total_bytes > 0 else 0.0


MemoryReader = Callable[[], MemorySnapshot]


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _v1_inactive_file(directory: Path) -> int:
    try:
        for line in (directory / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "total_inactive_file":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _limited(directory: Path) -> MemorySnapshot | None:
    """Usage against the limit set on this one cgroup directory (v2 or v1), None without one."""
    limit = _read_int(directory / "memory.max")  # v2: "max" (no limit) is not a digit
    if limit is not None:
        current = _read_int(directory / "memory.current")
        return MemorySnapshot(current, limit) if current is not None else None
    limit = _read_int(directory / "memory.limit_in_bytes")
    usage = _read_int(directory / "memory.usage_in_bytes")
    if limit is None or usage is None or limit >= _V1_UNLIMITED_BYTES:
        return None
    # As Ray: page cache that can be dropped at once is not memory pressure.
    return MemorySnapshot(max(usage - _v1_inactive_file(directory), 0), limit)


def _own_paths(proc_cgroup: Path) -> list[str]:
    """This process's cgroup paths from /proc/self/cgroup: the v1 memory hierarchy's first,
    then the unified (v2) one."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    v1 = [path for _, controllers, path in (line.split(":", 2) for line in lines if line.count(":") >= 2)
          if "memory" in controllers.split(",")]
    v2 = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
    return v1 + v2


def read_cgroup(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> MemorySnapshot | None:
    """The nearest limit over this process: its own memory cgroup's, else the closest ancestor's
    that sets one (a raylet moved into a cgroup, a Slurm job step, a Kubernetes pod); None when
    no cgroup up to `root` sets a limit. A path the mount does not show (a container without its
    own cgroup namespace) falls back to the mount's top."""
    for base in (root / "memory", root):
        for own in _own_paths(proc_cgroup) or ["/"]:
            directory = base / own.strip("/")
            while True:
                if directory.is_dir():
                    found = _limited(directory)
                    if found is not None:
                        return found
                if directory == base:
                    break
                directory = directory.parent
    return None


def read_meminfo(path: Path = MEMINFO) -> MemorySnapshot:
    """Used = MemTotal - MemAvailable (what the kernel could hand out without swapping)."""
    fields: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[key] = int(parts[0]) * 1024  # kB
    total = fields["MemTotal"]
    return MemorySnapshot(total - fields.get("MemAvailable", fields.get("MemFree", 0)), total)


def read_node_memory() -> MemorySnapshot:
    """This node's memory: its cgroup's when limited, else the machine's."""
    return read_cgroup() or read_meminfo()


def file_reader(path: Path) -> MemoryReader:
    """A reader of `{"used_bytes": .., "total_bytes": ..}` in `path`, reread on every call.

    For tests of the guard's loop; a raylet always reads the real node (`read_node_memory`).
    """

    def read() -> MemorySnapshot:
        data = json.loads(path.read_text())
        return MemorySnapshot(int(data["used_bytes"]), int(data["total_bytes"]))

    return read

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


def _v1_inactive_file(root: Path) -> int:
    try:
        for line in (root / "memory" / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "total_inactive_file":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def read_cgroup(root: Path = CGROUP_ROOT) -> MemorySnapshot | None:
    """The cgroup's usage against its limit, or None when the cgroup sets no limit."""
    limit = _read_int(root / "memory.max")  # v2: "max" (no limit) is not a digit
    if limit is not None:
        current = _read_int(root / "memory.current")
        return MemorySnapshot(current, limit) if current is not None else None
    limit = _read_int(root / "memory" / "memory.limit_in_bytes")
    usage = _read_int(root / "memory" / "memory.usage_in_bytes")
    if limit is None or usage is None or limit >= _V1_UNLIMITED_BYTES:
        return None
    # As Ray: page cache that can be dropped at once is not memory pressure.
    return MemorySnapshot(max(usage - _v1_inactive_file(root), 0), limit)


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

    The raylet's entry point uses it when RAYCTL_FAKE_NODE_MEMORY_FILE names a file, so a test
    can make a real raylet see 96 % without filling the machine's memory.
    """

    def read() -> MemorySnapshot:
        data = json.loads(path.read_text())
        return MemorySnapshot(int(data["used_bytes"]), int(data["total_bytes"]))

    return read

"""A node's log files for the dashboard (Raylet.ListLogs / ReadLog): the plain files of its
session's logs/ directory, by name only (no path, no dot file, no link followed), and the end of
one of them, at most MAX_TAIL bytes so a reply stays a small gRPC message."""

from __future__ import annotations

import os
import stat

MAX_TAIL = 1024 * 1024


def list_logs(log_dir: str) -> list[tuple[str, int]]:
    """(name, size) of each log file, by name."""
    files = []
    try:
        entries = list(os.scandir(log_dir))
    except OSError:
        return []
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
            continue
        try:
            files.append((entry.name, entry.stat(follow_symlinks=False).st_size))
        except OSError:
            continue  # rotated away meanwhile
    return sorted(files)


def read_tail(log_dir: str, name: str, tail: int) -> bytes | None:
    """The last `tail` bytes of log file `name` (at most MAX_TAIL); None: no such log file."""
    if not name or name.startswith(".") or "/" in name or "\0" in name:
        return None
    try:
        fd = os.open(os.path.join(log_dir, name), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        want = max(0, min(tail, MAX_TAIL))
        f.seek(max(0, info.st_size - want))
        return f.read(want)

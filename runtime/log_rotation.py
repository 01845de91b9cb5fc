"""Session log rotation by size and count, as Ray's (RAY_ROTATION_MAX_BYTES, _BACKUP_COUNT).

Every rayctl process writes its log through its own stdout/stderr (a file in the session's
`logs/`, opened by whoever started it). `rotate_own_output` starts a thread in that process that
checks the file's size once a second; past the limit it renames path -> path.1 -> ... ->
path.<backups> (the oldest dropped), opens a fresh file at `path` and `dup2`s it over the
descriptors that wrote to the old one. The process swaps its own descriptors, so a write (from
Python or from native code) lands whole in the old file or in the new one: nothing is lost or
split by a rotation. A file overshoots the limit by at most a second of output.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_MAX_BYTES = 512 * 1024**2
DEFAULT_BACKUPS = 5
MAX_BYTES_ENV = "RAYCTL_LOG_ROTATION_BYTES"
BACKUPS_ENV = "RAYCTL_LOG_ROTATION_BACKUPS"
CHECK_EVERY_S = 1.0

log = logging.getLogger("rayctl.logs")


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    max_bytes: int = DEFAULT_MAX_BYTES  # 0: never rotate
    backups: int = DEFAULT_BACKUPS  # 0: a full file is started afresh, nothing kept

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RotationPolicy:
        """The policy named by RAYCTL_LOG_ROTATION_BYTES / _BACKUPS (the defaults when unset)."""
        env = os.environ if environ is None else environ
        try:
            policy = cls(
                int(env.get(MAX_BYTES_ENV, DEFAULT_MAX_BYTES)),
                int(env.get(BACKUPS_ENV, DEFAULT_BACKUPS)),
            )
        except ValueError as exc:
            raise ValueError(
                f"{MAX_BYTES_ENV} and {BACKUPS_ENV} must be whole numbers ({exc}); "
                "unset them or set e.g. 536870912 and 5"
            ) from exc
        if policy.max_bytes < 0 or policy.backups < 0:
            raise ValueError(
                f"{MAX_BYTES_ENV} and {BACKUPS_ENV} cannot be negative; 0 turns rotation off"
            )
        return policy


def shift_backups(path: str, backups: int) -> None:
    """path -> path.1, path.1 -> path.2, ...; the one past `backups` is dropped."""
    if backups <= 0:
        os.remove(path)
        return
    for i in range(backups - 1, 0, -1):
        older = f"{path}.{i}"
        if os.path.exists(older):
            os.replace(older, f"{path}.{i + 1}")
    os.replace(path, f"{path}.1")


def _file_of(fd: int) -> tuple[str, os.stat_result] | None:
    """The regular file `fd` writes to, or None (a terminal, a pipe, a closed descriptor)."""
    try:
        info = os.fstat(fd)
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    if not os.path.isabs(path) or path.endswith(" (deleted)"):
        return None
    return (path, info) if stat.S_ISREG(info.st_mode) else None


def rotate_if_full(fds: Sequence[int], policy: RotationPolicy) -> list[str]:
    """One check of this process's descriptors `fds`: each file past the limit is rotated and
    every one of `fds` that wrote to it now writes to the fresh file. Returns the paths rotated."""
    if policy.max_bytes <= 0:
        return []
    by_file: dict[tuple[int, int], tuple[str, int, list[int]]] = {}
    for fd in fds:
        found = _file_of(fd)
        if found is not None:
            path, info = found
            by_file.setdefault((info.st_dev, info.st_ino), (path, info.st_size, []))[2].append(fd)
    rotated = []
    for path, size, writers in by_file.values():
        if size <= policy.max_bytes:
            continue
        shift_backups(path, policy.backups)
        fresh = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            for fd in writers:
                os.dup2(fresh, fd)
        finally:
            os.close(fresh)
        rotated.append(path)
    return rotated


def rotate_own_output(policy: RotationPolicy | None = None, fds: Sequence[int] = (1, 2)) -> None:
    """Keep this process's stdout/stderr files within the policy, from a daemon thread."""
    if policy is None:
        try:
            policy = RotationPolicy.from_env()
        except ValueError as exc:  # `rayctl start` refuses it; a process started otherwise goes on
            log.warning("%s; rotating with the defaults", exc)
            policy = RotationPolicy()
    if policy.max_bytes <= 0:
        return

    def loop() -> None:
        stop = threading.Event()
        while not stop.wait(CHECK_EVERY_S):
            try:
                rotate_if_full(fds, policy)
            except OSError as exc:  # a full disk, a removed directory: try again next time
                log.warning("log rotation failed: %s", exc)

    threading.Thread(target=loop, name="rayctl-log-rotation", daemon=True).start()

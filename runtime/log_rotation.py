"""Session log rotation by size and count, as Ray's (RAY_ROTATION_MAX_BYTES, _BACKUP_COUNT).

`RotatingLogWriter` appends whole lines to `path`, and before a line would take the file past
`max_bytes` it renames path -> path.1 -> ... -> path.<backups> (the oldest dropped), so no line
is split or lost around a rotation. A process whose stdout/stderr is redirected gets a pipe to
`python -m runtime.log_rotation PATH` (`copy_stream`), which copies it line by line.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import BinaryIO

DEFAULT_MAX_BYTES = 512 * 1024**2
DEFAULT_BACKUPS = 5
MAX_BYTES_ENV = "RAYCTL_LOG_ROTATION_BYTES"
BACKUPS_ENV = "RAYCTL_LOG_ROTATION_BACKUPS"


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    max_bytes: int = DEFAULT_MAX_BYTES  # 0: never rotate
    backups: int = DEFAULT_BACKUPS

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> RotationPolicy:
        """The policy named by RAYCTL_LOG_ROTATION_BYTES / _BACKUPS (the defaults when unset)."""
        env = os.environ if environ is None else environ
        try:
            return cls(
                int(env.get(MAX_BYTES_ENV, DEFAULT_MAX_BYTES)),
                int(env.get(BACKUPS_ENV, DEFAULT_BACKUPS)),
            )
        except ValueError as exc:
            raise ValueError(
                f"{MAX_BYTES_ENV} and {BACKUPS_ENV} must be whole numbers ({exc}); "
                "unset them or set e.g. 536870912 and 5"
            ) from exc


class RotatingLogWriter:
    """Appends lines to a file that rotates by size; not thread-safe (one writer per file)."""

    def __init__(self, path: str, policy: RotationPolicy) -> None:
        self.path = path
        self.policy = policy
        self._file: BinaryIO = open(path, "ab")  # noqa: SIM115 - kept open for the writer's life
        self._size = self._file.tell()

    def write(self, data: bytes) -> None:
        limit = self.policy.max_bytes
        if limit > 0 and self._size > 0 and self._size + len(data) > limit:
            self._rotate()
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def _rotate(self) -> None:
        self._file.close()
        backups = self.policy.backups
        if backups <= 0:
            os.remove(self.path)
        else:
            for i in range(backups - 1, 0, -1):
                older = f"{self.path}.{i}"
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{i + 1}")
            os.replace(self.path, f"{self.path}.1")
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        self._file.close()


def copy_stream(source: BinaryIO, writer: RotatingLogWriter) -> None:
    """Copy `source` line by line until EOF (a line longer than the limit is kept whole)."""
    for line in iter(source.readline, b""):
        writer.write(line)
    writer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="copy stdin to a size-rotated log file")
    parser.add_argument("path")
    args = parser.parse_args(argv)
    copy_stream(sys.stdin.buffer, RotatingLogWriter(args.path, RotationPolicy.from_env()))


if __name__ == "__main__":
    main()

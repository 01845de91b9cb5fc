"""Session logs rotate by size and count, keeping every line whole and the newest lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runtime.log_rotation import BACKUPS_ENV, MAX_BYTES_ENV, RotationPolicy

# A process whose stdout and stderr share one file (as the raylet's and the GCS's do): it prints
# from Python and writes from the descriptor directly, checking for rotation every 50 lines.
PRINTER = """
import os, sys
from runtime.log_rotation import RotationPolicy, rotate_if_full
policy = RotationPolicy(10_000, 3)
for i in range(2000):
    if i % 2:
        print(f"line {i:05d} " + "x" * 40, flush=True)
    else:
        os.write(2, f"line {i:05d} ".encode() + b"y" * 40 + b"\\n")
    if i % 50 == 49:
        rotate_if_full((1, 2), policy)
"""


def test_a_process_printing_past_the_limit_leaves_n_backups_and_its_newest_lines(
    tmp_path: Path,
) -> None:
    log = tmp_path / "raylet.log"
    with open(log, "ab") as out:
        subprocess.run([sys.executable, "-c", PRINTER], stdout=out, stderr=out, check=True)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["raylet.log", "raylet.log.1", "raylet.log.2", "raylet.log.3"]
    kept: list[str] = []
    for name in reversed(files[1:]):
        # at most one check's worth (50 lines of 51 bytes) past the limit
        assert (tmp_path / name).stat().st_size <= 10_000 + 50 * 51
        kept += (tmp_path / name).read_text().splitlines()
    kept += log.read_text().splitlines()
    # The newest lines are all there, in order, none lost or split around a rotation.
    numbers = [int(line.split()[1]) for line in kept]
    assert numbers == list(range(numbers[0], 2000))
    assert all(line.endswith("x" * 40 if int(line.split()[1]) % 2 else "y" * 40) for line in kept)


def test_bad_env_names_the_variable() -> None:
    with pytest.raises(ValueError, match=MAX_BYTES_ENV):
        RotationPolicy.from_env({MAX_BYTES_ENV: "lots"})
    with pytest.raises(ValueError, match="negative"):
        RotationPolicy.from_env({BACKUPS_ENV: "-1"})
    assert RotationPolicy.from_env({}) == RotationPolicy(512 * 1024**2, 5)

"""Session logs rotate by size and count, keeping every line whole and the newest lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.log_rotation import BACKUPS_ENV, MAX_BYTES_ENV, RotationPolicy

PRINTER = "import sys\nfor i in range(2000):\n    print(f'line {i:05d} ' + 'x' * 40)\n"


def test_a_process_printing_past_the_limit_leaves_n_backups_and_its_newest_lines(
    tmp_path: Path,
) -> None:
    log = tmp_path / "worker.out"
    env = {**os.environ, MAX_BYTES_ENV: "10000", BACKUPS_ENV: "3"}
    copier = subprocess.Popen(
        [sys.executable, "-m", "runtime.log_rotation", str(log)], stdin=subprocess.PIPE, env=env
    )
    try:
        subprocess.run([sys.executable, "-c", PRINTER], stdout=copier.stdin, check=True)
    finally:
        assert copier.stdin is not None
        copier.stdin.close()
        copier.wait(timeout=30)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["worker.out", "worker.out.1", "worker.out.2", "worker.out.3"]
    kept: list[str] = []
    for name in reversed(files[1:]):
        assert (tmp_path / name).stat().st_size <= 10000
        kept += (tmp_path / name).read_text().splitlines()
    kept += log.read_text().splitlines()
    assert log.stat().st_size <= 10000
    # The newest lines are all there, in order, none split around a rotation.
    numbers = [int(line.split()[1]) for line in kept]
    assert numbers == list(range(numbers[0], 2000))
    assert all(line.endswith("x" * 40) for line in kept)


def test_bad_env_names_the_variable() -> None:
    with pytest.raises(ValueError, match=MAX_BYTES_ENV):
        RotationPolicy.from_env({MAX_BYTES_ENV: "lots"})
    assert RotationPolicy.from_env({}) == RotationPolicy(512 * 1024**2, 5)

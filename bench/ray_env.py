"""The Ray reference environment: a private venv (bench/.ray-venv) holding ray from PyPI.

Created on first use with `python -m venv` + `pip install`; reused afterwards when the installed
version is the one asked for. If that version is not on the index, the closest one is used.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

RAY_VERSION = "2.60.0"
BENCH_DIR = Path(__file__).resolve().parent
RAY_VENV = BENCH_DIR / ".ray-venv"
# psutil: the workload measures the idle cluster's memory from inside the driver.
EXTRA_PACKAGES = ("numpy", "psutil")
# `default`: Ray's job server and its JobSubmissionClient (bench/jobs.py drives both).
RAY_EXTRAS = "[default]"


class RayEnvError(RuntimeError):
    """The Ray venv could not be created or ray could not be installed into it."""


@dataclass(frozen=True, slots=True)
class RayEnv:
    python: Path
    ray_version: str
    note: str  # why this version, e.g. "2.60.0 not on the index: using 2.59.0"


def venv_python(venv: Path = RAY_VENV) -> Path:
    return venv / "bin" / "python"


def installed_ray_version(python: Path) -> str | None:
    """The ray version importable by `python`, or None when there is none."""
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import ray, ray.job_submission, aiohttp, numpy, psutil; "
         "print(ray.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        return None
    return probe.stdout.strip() or None


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def closest_version(wanted: str, available: list[str]) -> str:
    """The newest version not above `wanted`; failing that, the oldest one above it."""
    if not available:
        raise RayEnvError(f"no ray version is available on the index (wanted {wanted})")
    target = _version_key(wanted)
    ordered = sorted(available, key=_version_key)
    below = [v for v in ordered if _version_key(v) <= target]
    return below[-1] if below else ordered[0]


def _available_versions(python: Path) -> list[str]:
    listing = subprocess.run(
        [str(python), "-m", "pip", "index", "versions", "ray"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    match = re.search(r"Available versions:\s*(.+)", listing.stdout)
    return [v.strip() for v in match.group(1).split(",")] if match else []


def _pip_install(python: Path, version: str) -> bool:
    log = sys.stderr
    print(f"bench: installing ray{RAY_EXTRAS}=={version} into {RAY_VENV} (about 150 MB) ...",
          file=log)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"ray{RAY_EXTRAS}=={version}", *EXTRA_PACKAGES],
        stdout=log,
        stderr=log,
        timeout=1800,
    )
    return done.returncode == 0


def ensure_ray_env(wanted: str = RAY_VERSION) -> RayEnv:
    """Return a venv python that imports ray `wanted` (or the closest available version)."""
    python = venv_python()
    current = installed_ray_version(python)
    if current == wanted:
        return RayEnv(python, current, "")
    if not python.exists():
        print(f"bench: creating {RAY_VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(RAY_VENV)], check=True, timeout=300)
    if _pip_install(python, wanted):
        return RayEnv(python, wanted, "")
    fallback = closest_version(wanted, _available_versions(python))
    note = f"ray {wanted} is not installable here: using the closest version, {fallback}"
    print(f"bench: {note}", file=sys.stderr)
    if current == fallback:
        return RayEnv(python, fallback, note)
    if not _pip_install(python, fallback):
        raise RayEnvError(
            f"pip could not install ray=={wanted} nor ray=={fallback} into {RAY_VENV}; "
            "check the pip output above, or delete that folder and run again"
        )
    return RayEnv(python, fallback, note)

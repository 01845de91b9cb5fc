"""Shared fixtures: a private runtime cluster (real Redis, GCS, raylet and workers) per module,
in its own temp dir, stopped and checked for leftovers at the end."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from providers import registry

# The in-memory provider is a test double, not a production provider type: tests name it.
registry.register("fake", "providers.fake:FakeProvider")


def session_pids(temp_dir: str) -> list[int]:
    from runtime.session import all_sessions, session_processes

    return [p.pid for s in all_sessions(temp_dir) for p in session_processes(s)]


@pytest.fixture(scope="module")
def temp_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="rayctl-test-")
    try:
        yield path
    finally:
        from runtime.session import all_sessions, stop_session

        for session in all_sessions(path):
            stop_session(session, grace_s=2)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[Any]:
    """A private cluster with 2 CPUs and a custom resource, shared by one test module."""
    import runtime as rt

    rt.init(
        num_cpus=2, resources={"widget": 2}, object_store_memory=256 * 1024**2, _temp_dir=temp_dir
    )
    try:
        yield rt
    finally:
        pids = session_pids(temp_dir)
        rt.shutdown()
        gone, alive = psutil.wait_procs(
            [psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10
        )
        assert not alive, f"processes left after shutdown: {alive}"
        shm_dirs = [line.strip() for f in glob.glob(os.path.join(temp_dir, "session_*", "shm_dirs"))
                    for line in open(f) if line.strip()]
        assert shm_dirs, "the cluster recorded no object store directory"
        leftover = [d for d in shm_dirs if os.path.exists(d)]
        assert not leftover, f"shm dirs left after shutdown: {leftover}"

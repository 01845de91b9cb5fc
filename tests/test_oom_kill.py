"""A real raylet in a real memory cgroup (600 MB): a task that keeps allocating is killed by the
raylet's memory monitor before the kernel's OOM killer acts, its caller learns why, and a task
with retries left runs again. Needs root and a cgroup memory controller (v1 or v2)."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from runtime.cluster_utils import Cluster
from runtime.raylet.oom import REFRESH_ENV, THRESHOLD_ENV
from tests.polling import wait_for

LIMIT_BYTES = 600 * 1024**2
THRESHOLD = 0.7  # 420 MB: far enough below the limit that a 100 ms check always comes first


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int) -> Iterator[Path]:
    v1 = Path("/sys/fs/cgroup/memory")
    v2 = Path("/sys/fs/cgroup")
    name = f"rayctl-test-{uuid.uuid4().hex[:8]}"
    if (v1 / "memory.limit_in_bytes").exists():
        directory, limit_file = v1 / name, "memory.limit_in_bytes"
    elif "memory" in (v2 / "cgroup.subtree_control").read_text(errors="ignore") if (
        v2 / "cgroup.subtree_control"
    ).exists() else False:
        directory, limit_file = v2 / name, "memory.max"
    else:
        pytest.skip("no cgroup memory controller on this machine")
    try:
        directory.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a memory cgroup here (needs root): {exc}")
    try:
        (directory / limit_file).write_text(str(limit_bytes))
        yield directory
    finally:
        deadline = time.monotonic() + 20
        while True:  # the cgroup can go once every process in it has exited
            try:
                directory.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def kernel_oom_kills(cgroup: Path) -> int:
    """How many processes the kernel's OOM killer took in the cgroup."""
    for name in ("memory.oom_control", "memory.events"):
        path = cgroup / name
        if path.exists():
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    return 0


@pytest.fixture(scope="module")
def boxed_node() -> Iterator[tuple[Cluster, Path]]:
    with memory_cgroup(LIMIT_BYTES) as cgroup:
        cluster = Cluster({"num_cpus": 1})
        try:
            node = cluster.add_node(
                num_cpus=1,
                resources={"boxed": 1},
                env={THRESHOLD_ENV: str(THRESHOLD), REFRESH_ENV: "100"},
            )
            raylet = psutil.Process(node.procs[-1].pid)
            for proc in [raylet, *raylet.children(recursive=True)]:
                (cgroup / "cgroup.procs").write_text(str(proc.pid))
            cluster.connect()
            yield cluster, cgroup
        finally:
            cluster.shutdown()


def test_a_task_that_fills_the_node_gets_out_of_memory_error_naming_the_monitor(
    boxed_node: tuple[Cluster, Path],
) -> None:
    import runtime as rt
    from runtime.exceptions import OutOfMemoryError

    cluster, cgroup = boxed_node

    @rt.remote(resources={"boxed": 1}, num_cpus=0, max_retries=0)
    def hog() -> int:
        chunks = []
        for _ in range(300):  # 3 GB at 200 MB/s, far past the cgroup's 600 MB
            chunks.append(bytearray(10 * 1024**2))
            time.sleep(0.05)
        return len(chunks)

    started = time.monotonic()
    with pytest.raises(OutOfMemoryError) as caught:
        rt.get(hog.remote(), timeout=60)
    text = str(caught.value)
    node_id = cluster.nodes[1].node_id
    assert "task hog" in text and "memory monitor" in text and node_id in text
    assert "70%" in text  # the threshold it crossed
    assert kernel_oom_kills(cgroup) == 0  # the monitor acted, not the kernel
    print(f"hog killed after {time.monotonic() - started:.1f}s: {text}")

    @rt.remote(resources={"boxed": 1}, num_cpus=0)
    def small() -> str:
        return "ok"

    assert rt.get(small.remote(), timeout=30) == "ok"  # the node itself lives on


def test_a_task_with_retries_left_runs_again_after_the_kill(
    boxed_node: tuple[Cluster, Path], tmp_path: Path
) -> None:
    import runtime as rt

    _, cgroup = boxed_node
    marker = tmp_path / "first-attempt"

    @rt.remote(resources={"boxed": 1}, num_cpus=0, max_retries=1)
    def hog_once(marker: str) -> str:
        if not os.path.exists(marker):
            open(marker, "w").close()
            chunks = [bytearray(10 * 1024**2) for _ in range(1)]
            while len(chunks) < 300:
                chunks.append(bytearray(10 * 1024**2))
                time.sleep(0.05)
        return "second attempt"

    assert rt.get(hog_once.remote(str(marker)), timeout=60) == "second attempt"
    assert marker.exists() and kernel_oom_kills(cgroup) == 0


def test_an_actor_that_fills_the_node_is_restarted_and_its_death_names_the_monitor(
    boxed_node: tuple[Cluster, Path],
) -> None:
    import runtime as rt
    from runtime.exceptions import ActorError

    _, cgroup = boxed_node

    @rt.remote(resources={"boxed": 1}, num_cpus=0, max_restarts=1)
    class Hoarder:
        def __init__(self) -> None:
            self.chunks: list[bytearray] = []

        def pid(self) -> int:
            return os.getpid()

        def hoard(self) -> int:
            while len(self.chunks) < 300:
                self.chunks.append(bytearray(10 * 1024**2))
                time.sleep(0.05)
            return len(self.chunks)

    actor = Hoarder.remote()
    first = rt.get(actor.pid.remote(), timeout=30)
    with pytest.raises(ActorError) as caught:
        rt.get(actor.hoard.remote(), timeout=60)
    assert "memory monitor" in str(caught.value), caught.value  # why it restarts
    assert kernel_oom_kills(cgroup) == 0
    second = wait_for(lambda: _pid_or_none(rt, actor), 30, "the actor to restart")
    assert second != first


def _pid_or_none(rt: Any, actor: Any) -> int | None:
    try:
        pid: int = rt.get(actor.pid.remote(), timeout=5)
    except Exception:  # noqa: BLE001 - still restarting
        return None
    return pid

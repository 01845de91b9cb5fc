"""The GCS's Redis schema has a version: a fresh cluster is stamped with it, and a GCS that finds
a cluster's state written by another version (an older rayctl wrote none) refuses to start with
one line saying what it found and what to do, instead of misreading every record."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from autoscaler_redis import RedisServer, new_cluster_id, redis_server_fixture  # noqa: F401
from polling import wait_for

from runtime.auth import write_private_file
from runtime.gcs.schema import SCHEMA_VERSION, GcsKeys

REPO = Path(__file__).resolve().parent.parent

# A NodeInfo as protocol 1 wrote it: node_id (field 1) and the state as a string (field 8).
OLD_NODE_ROW = b"\x0a\x06node-1" + b"\x42\x05ALIVE"


class GcsRun:
    """A GCS process on the test Redis; stopped (and waited for) by the fixture."""

    def __init__(self, redis_server: RedisServer, work: Path) -> None:
        self.redis_server = redis_server
        self.work = work
        self.token_file = work / "token"
        write_private_file(str(self.token_file), redis_server.password)
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, cluster_id: str) -> subprocess.Popen[str]:
        ready = self.work / f"{cluster_id}.ready"
        proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.gcs.server", "--port", "0",
             "--redis-port", str(self.redis_server.port), "--token-file", str(self.token_file),
             "--cluster-id", cluster_id, "--session-dir", str(self.work),
             "--ready-file", str(ready), "--parent-pid", str(os.getpid())],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()


@pytest.fixture()
def gcs(redis_server: RedisServer, tmp_path: Path) -> Iterator[GcsRun]:
    run = GcsRun(redis_server, tmp_path)
    try:
        yield run
    finally:
        run.stop()


def refusal(proc: subprocess.Popen[str]) -> list[str]:
    """The lines a GCS that refused to start wrote, once it exited."""
    assert proc.wait(30) != 0, "the GCS started on state it cannot read"
    assert proc.stderr is not None
    return [line for line in proc.stderr.read().splitlines() if line.strip()]


def test_a_fresh_cluster_is_stamped_with_the_schema_version(gcs: GcsRun, redis_server) -> None:
    cluster_id = new_cluster_id()
    proc = gcs.start(cluster_id)
    wait_for(lambda: (gcs.work / f"{cluster_id}.ready").exists() or proc.poll() is not None, 30,
             "the GCS to be ready")
    assert proc.poll() is None, "the GCS exited on a fresh cluster"
    client = redis_server.client()
    assert client.get(GcsKeys(cluster_id).schema_version) == str(SCHEMA_VERSION).encode()


def test_state_written_by_the_old_version_is_refused_in_one_line(gcs: GcsRun, redis_server) -> None:
    cluster_id = new_cluster_id()
    keys = GcsKeys(cluster_id)
    client = redis_server.client()
    client.hset(keys.nodes, "node-1", OLD_NODE_ROW)
    client.hset(keys.jobs, "0a0b0c0d", '{"driver_address": "", "driver_pid": 1, "namespace": "", '
                                       '"start": 1.0, "end": null}')
    [line] = refusal(gcs.start(cluster_id))
    assert f"cluster {cluster_id} written with no schema version (an older rayctl)" in line
    assert f"reads schema version {SCHEMA_VERSION}" in line
    assert "rayctl stop" in line and "start a new session" in line
    assert client.get(keys.schema_version) is None, "the refusing GCS stamped old state"
    assert client.hget(keys.nodes, "node-1") == OLD_NODE_ROW, "the refusing GCS changed a table"


def test_state_of_another_schema_version_is_refused(gcs: GcsRun, redis_server) -> None:
    cluster_id = new_cluster_id()
    keys = GcsKeys(cluster_id)
    client = redis_server.client()
    client.set(keys.schema_version, str(SCHEMA_VERSION + 1))
    [line] = refusal(gcs.start(cluster_id))
    assert f"written with schema version {SCHEMA_VERSION + 1}" in line

"""A real Redis (valkey) server for the autoscaler tests: one per test module, password set,
on 127.0.0.1, killed and its directory removed at the end even when a test fails."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

PASSWORD = "autoscaler-test-token"


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    password: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, password=self.password)


def new_cluster_id() -> str:
    """Tests share the server; a fresh cluster id keeps their keys apart."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module", name="redis_server")
def redis_server_fixture() -> Iterator[RedisServer]:
    from runtime.node import free_port
    from runtime.redis_server import start_redis, wait_redis

    data_dir = tempfile.mkdtemp(prefix="rayctl-autoscaler-redis-")
    port = free_port("127.0.0.1")
    proc = start_redis("127.0.0.1", port, PASSWORD, data_dir, f"{data_dir}/redis.log")
    try:
        wait_redis("127.0.0.1", port, PASSWORD)
        yield RedisServer("127.0.0.1", port, PASSWORD)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)

"""The GCS while its Redis is down: a change that cannot be written leaves memory as Redis has
it, callers hear UNAVAILABLE with a message naming the store (never a raw redis exception), the
background loops come back, and once Redis is restarted from its append-only file the GCS
answers again with what was written before."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis.exceptions
from polling import wait_for


@dataclass
class Store:
    """A real Redis in a temp dir that a test may kill and start again (same line, same file)."""

    argv: list[str]
    port: int
    password: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from runtime.redis_server import wait_redis

        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_redis("127.0.0.1", self.port, self.password)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    from runtime.node import free_port
    from runtime.redis_server import redis_argv

    port, password = free_port("127.0.0.1"), "outage-test"
    (tmp_path / "redis").mkdir()
    server = Store(redis_argv("127.0.0.1", port, password, str(tmp_path / "redis"),
                              str(tmp_path / "redis.log")), port, password)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


def test_a_change_that_cannot_be_written_leaves_memory_as_redis_has_it(store: Store) -> None:
    import redis.asyncio as aioredis

    from runtime.gcs.tables import Tables
    from runtime.protocol.common_pb2 import ActorInfo

    async def scenario() -> None:
        client = aioredis.Redis(port=store.port, password=store.password)
        tables = Tables(client, "outage")
        await tables.load()
        await tables.put_actor(ActorInfo(actor_id="a1", state=ActorInfo.ALIVE, address="w:1"))
        actor = tables.actors["a1"]
        store.kill()
        with pytest.raises(redis.exceptions.ConnectionError):
            async with tables.edit(actor) as draft:
                draft.state = ActorInfo.DEAD
                draft.address = ""
        assert tables.actors["a1"] is actor
        assert (actor.state, actor.address) == (ActorInfo.ALIVE, "w:1")  # as Redis has it
        store.start()
        async with tables.edit(actor) as draft:  # the same change once Redis is back
            draft.state = ActorInfo.DEAD
        reloaded = Tables(client, "outage")
        await reloaded.load()
        assert reloaded.actors["a1"].state == ActorInfo.DEAD and actor.state == ActorInfo.DEAD
        await client.aclose()

    asyncio.run(scenario())


def test_callers_hear_unavailable_naming_the_store_then_the_gcs_answers_again(
    store: Store, tmp_path: Path
) -> None:
    from runtime.grpc_auth import open_channel
    from runtime.protocol import gcs_pb2, gcs_pb2_grpc

    token_file = tmp_path / "token"
    token_file.write_text(store.password)
    ready = tmp_path / "gcs.ready"
    with open(tmp_path / "gcs.log", "ab") as log:
        gcs = subprocess.Popen(
            [sys.executable, "-m", "runtime.gcs.server", "--redis-port", str(store.port),
             "--token-file", str(token_file), "--cluster-id", "outage", "--session-dir",
             str(tmp_path), "--ready-file", str(ready)],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(ready.exists, 20, "the GCS")
        channel = open_channel(f"127.0.0.1:{ready.read_text()}", store.password)
        gcs_stub = gcs_pb2_grpc.GcsStub(channel)

        def put(value: bytes) -> None:
            gcs_stub.KvPut(gcs_pb2.KvRequest(ns="t", key="k", value=value, overwrite=True), timeout=5)

        put(b"before")
        store.kill()
        with pytest.raises(grpc.RpcError) as refused:
            put(b"during")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "control store" in refused.value.details()
        assert "Error" not in refused.value.details().split("(")[0]  # ours first, not redis's
        store.start()
        found = gcs_stub.KvGet(gcs_pb2.KvRequest(ns="t", key="k"), timeout=5)
        assert found.value == b"before"  # reloaded from the append-only file
        put(b"after")
        assert gcs.poll() is None, "the GCS rode through the outage"
        channel.close()
    finally:
        gcs.terminate()
        gcs.wait(10)


def test_a_gcs_loop_that_fails_is_logged_and_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    from runtime.gcs import store_errors

    runs: list[int] = []

    async def flaky_loop() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise redis.exceptions.ConnectionError("Connection refused")
        if len(runs) == 2:
            raise KeyError("a record the loop did not expect")
        await asyncio.Event().wait()  # the third run goes on

    async def scenario() -> None:
        task = asyncio.ensure_future(store_errors.keep_running("test", flaky_loop))
        while len(runs) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.WARNING, logger="rayctl.gcs"):
        asyncio.run(asyncio.wait_for(scenario(), 10))
    assert runs == [0, 1, 2]
    messages = [r.getMessage() for r in caplog.records]
    assert any("the test loop stopped: the store did not answer" in m for m in messages)
    assert any("the test loop failed" in m for m in messages)

"""The node sync stream (runtime/gcs/node_sync.py, runtime/raylet/gcs_link.py) against a real GCS:
simulated nodes register and sync as raylets do, and see the whole view once, then only the rows
that changed; a silent node is declared dead in time and told so when it speaks again; the
stream is authenticated both ways."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest


class SimNode:
    """A raylet's side of the protocol, without the raylet."""

    def __init__(self, gcs: str, token: str, node_id: str) -> None:
        from runtime.grpc_auth import open_aio_channel

        self.node_id = node_id
        self.channel = open_aio_channel(gcs, token)
        self.total = {"CPU": 4.0, "memory": 2.0**30}
        self.seq = 0
        self.call: Any = None

    async def join(self) -> None:
        from runtime.constants import PROTOCOL_VERSION, PYTHON_VERSION, RAYCTL_VERSION
        from runtime.protocol import common_pb2, gcs_pb2, gcs_pb2_grpc

        versions = common_pb2.Versions(python=PYTHON_VERSION, rayctl=RAYCTL_VERSION, protocol=PROTOCOL_VERSION)
        node = common_pb2.NodeInfo(node_id=self.node_id, address="127.0.0.1", local_port=1, total=self.total,
                                   available=self.total, versions=versions)
        await gcs_pb2_grpc.GcsStub(self.channel).RegisterNode(gcs_pb2.RegisterNodeRequest(node=node), timeout=10)
        self.call = await gcs_pb2_grpc.NodeSyncStub(self.channel).Sync.open()
        await self.report(self.total)

    async def report(self, available: dict[str, float] | None = None) -> int:
        from runtime.protocol import gcs_pb2

        self.seq += 1
        if available is None:
            message = gcs_pb2.NodeReport(node_id=self.node_id, seq=self.seq, ping=True)
        else:
            message = gcs_pb2.NodeReport(node_id=self.node_id, seq=self.seq, available=available,
                                         total=self.total)
        await self.call.write(message)
        return self.seq

    async def next(self, want: Any, timeout: float = 10.0) -> Any:
        """The next update `want(update)` accepts (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            update = await asyncio.wait_for(self.call.read(), max(0.01, deadline - time.monotonic()))
            assert update is not grpc.aio.EOF, "the GCS ended the stream"
            if want(update):
                return update

    async def close(self) -> None:
        if self.call is not None:
            self.call.cancel()
        await self.channel.close()


def _views(update: Any) -> bool:
    return not update.ack and not update.unknown_node


def test_a_node_gets_the_whole_view_once_then_only_the_rows_that_changed(cluster) -> None:
    from runtime.api import _core
    from runtime.protocol.common_pb2 import NodeInfo

    cw = _core()

    async def run() -> None:
        a = SimNode(cw.gcs_address, cw.token, "a" * 16)
        b = SimNode(cw.gcs_address, cw.token, "b" * 16)
        try:
            await a.join()
            whole = await a.next(_views)
            assert whole.full and a.node_id in {n.node_id for n in whole.nodes}
            assert any(n.is_head for n in whole.nodes), "the view holds the head node too"
            await b.join()
            joined = await a.next(lambda u: _views(u) and b.node_id in {n.node_id for n in u.nodes})
            assert not joined.full and joined.version > whole.version
            # b's free CPU changes: a hears of that amount alone, not of the whole cluster again
            seq = await b.report({"CPU": 1.0, "memory": 2.0**30})
            await b.next(lambda u: u.ack == seq, timeout=5)
            changed = await a.next(lambda u: _views(u) and b.node_id in {x.node_id for x in u.available})
            assert not changed.full and not changed.nodes
            # and of that row only the amount that changed
            assert [(x.node_id, dict(x.changed)) for x in changed.available] == [(b.node_id, {"CPU": 1.0})]
            # a ping is acknowledged, and changes nothing anyone is sent
            seq = await a.report()
            await a.next(lambda u: u.ack == seq, timeout=5)
            # b falls silent: declared dead within the death timeout, and leaves a's view
            silent_since = time.monotonic()
            while True:
                await a.report()
                update = await a.next(lambda u: True, timeout=10)
                gone = [n for n in update.nodes if n.node_id == b.node_id and n.state == NodeInfo.DEAD]
                if gone:
                    break
                assert time.monotonic() - silent_since < 10, "a silent node was not declared dead"
                await asyncio.sleep(0.2)
            # b speaks again: the GCS tells it to register again, and ends its stream
            await b.report()
            told = await b.next(lambda u: u.unknown_node or False, timeout=5)
            assert told.unknown_node
        finally:
            await a.close()
            await b.close()

    asyncio.run(run())


def test_the_sync_stream_is_authenticated_both_ways(cluster) -> None:
    """Without the token's proof the GCS refuses the stream; a server without it is refused by
    the node before it reads anything."""
    from runtime.api import _core
    from runtime.grpc_auth import open_aio_channel

    cw = _core()

    async def run() -> None:
        async with grpc.aio.insecure_channel(cw.gcs_address) as raw:
            call = raw.stream_stream("/rayctl.NodeSync/Sync")()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call.read()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

        async def impostor(_requests: Any, context: grpc.aio.ServicerContext) -> None:
            await context.write(b"\x08\x01")  # "unknown node: register again"

        server = grpc.aio.server()
        handler = grpc.stream_stream_rpc_method_handler(impostor)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("rayctl.NodeSync",
                                                                              {"Sync": handler}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            channel = open_aio_channel(f"127.0.0.1:{port}", cw.token)
            from runtime.protocol import gcs_pb2_grpc

            with pytest.raises(grpc.aio.AioRpcError) as unproven:
                await gcs_pb2_grpc.NodeSyncStub(channel).Sync.open()
            assert unproven.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "did not prove it holds this cluster's token" in unproven.value.details()
            await channel.close()
        finally:
            await server.stop(0)

    asyncio.run(run())

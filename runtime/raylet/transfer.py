"""Cross-node object transfer, raylet to raylet: a gRPC server stream of the object file in
chunks, written straight into this node's store as a secondary copy. Several readers of one object
share one transfer; an object is never held twice in memory (chunks go from the socket to the file).

Nodes never read each other's shared memory, even on one machine: every cross-node byte comes
through here (`bytes_received` counts them, and tests assert it)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from runtime import shm
from runtime.exceptions import ObjectLostError
from runtime.object_store import ObjectStore
from runtime.protocol import raylet_pb2, raylet_pb2_grpc

CHUNK_BYTES = 8 * 1024 * 1024
GRPC_MESSAGE_LIMIT = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", GRPC_MESSAGE_LIMIT),
    ("grpc.max_send_message_length", GRPC_MESSAGE_LIMIT),
]


class ObjectTransfer:
    def __init__(self, store: ObjectStore, shm_dir: str, metadata: Any,
                 node_address: Callable[[str], str | None]) -> None:
        self.store = store
        self.shm_dir = shm_dir
        self.md = metadata
        self.node_address = node_address  # node_id -> "host:grpc_port" of a live node, or None
        self._stubs: dict[str, raylet_pb2_grpc.RayletStub] = {}
        self._pulls: dict[str, asyncio.Future[str]] = {}
        self.bytes_received = 0
        self.bytes_sent = 0

    def stub(self, address: str) -> raylet_pb2_grpc.RayletStub:
        stub = self._stubs.get(address)
        if stub is None:
            channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            stub = self._stubs[address] = raylet_pb2_grpc.RayletStub(channel)
        return stub

    async def pull(self, object_id: str, node_id: str) -> str:
        """Path of a local copy of `object_id`, fetching it from `node_id` when needed."""
        if self.store.contains(object_id):
            return self.store.get_path(object_id)
        running = self._pulls.get(object_id)
        if running is None:
            running = asyncio.ensure_future(self._fetch(object_id, node_id))
            self._pulls[object_id] = running
            running.add_done_callback(lambda _f: self._pulls.pop(object_id, None))
        return await asyncio.shield(running)

    async def _fetch(self, object_id: str, node_id: str) -> str:
        address = self.node_address(node_id)
        if address is None:
            raise ObjectLostError(f"object {object_id} was on node {node_id}, which is no longer alive")
        tmp = shm.tmp_path(self.shm_dir, object_id)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        offset = 0
        try:
            stream = self.stub(address).PullObject(raylet_pb2.PullRequest(object_id=object_id), metadata=self.md)
            async for chunk in stream:
                view = memoryview(chunk.data)
                while view:
                    written = os.pwrite(fd, view, offset)
                    offset += written
                    view = view[written:]
            os.close(fd)
            fd = -1
            os.rename(tmp, shm.object_path(self.shm_dir, object_id))
        except grpc.aio.AioRpcError as exc:
            raise ObjectLostError(f"could not fetch object {object_id} from node {node_id}: {exc.details()}") from None
        finally:
            if fd >= 0:
                os.close(fd)
            shm.unlink_if_exists(tmp)
        self.bytes_received += offset
        self.store.add(object_id, offset, primary=False)
        return self.store.get_path(object_id)

    async def serve(self, object_id: str, context: Any) -> AsyncIterator[raylet_pb2.ObjectChunk]:
        try:
            path = self.store.get_path(object_id)
        except shm.ObjectNotFoundError:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"object {object_id} is not on this node")
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            total = os.fstat(fd).st_size
            offset = 0
            while offset < total:
                data = os.pread(fd, min(CHUNK_BYTES, total - offset), offset)
                offset += len(data)
                self.bytes_sent += len(data)
                yield raylet_pb2.ObjectChunk(data=data, total_size=total)
        finally:
            os.close(fd)

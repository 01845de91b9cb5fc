"""Cross-node object transfer, raylet to raylet, written straight into this node's store as a
secondary copy. Several readers of one object share one transfer; an object is never held twice
in memory: the sender streams the file with sendfile(2), the receiver reads the socket into one
reusable 32 MiB buffer and writes it to the destination file.

The bytes travel on a raw TCP data plane (Python gRPC streams ~0.35 GB/s here, a raw socket
several GB/s); gRPC stays the control plane. The data plane is authenticated like the direct
transport, both ways and without sending the token (runtime/auth.py):
  puller -> {object_id, node_id, nonce}
  sender -> {challenge, proof}            HMAC(token; server, both nonces, the object id)
  puller -> {proof}                       only if the sender's proof holds; else it hangs up
  sender -> size, bytes                   only if the puller's proof holds
so no object bytes, which readers later unpickle, are taken from a peer outside the cluster, and
none are given to one. Until it has proven itself a peer gets the caps of
runtime/listener_caps.py (4 KiB frames, 5 s for the whole handshake, 128 waiting connections).

Nodes never read each other's shared memory, even on one machine: every cross-node byte comes
through here (`bytes_received` / `bytes_sent` count them, and tests assert it)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from collections.abc import Callable

from runtime import shm
from runtime.auth import Channel, Role, is_nonce, new_nonce, proof, proof_ok
from runtime.exceptions import AuthenticationError, ObjectLostError
from runtime.listener_caps import HANDSHAKE_TIMEOUT_S, Unauthenticated
from runtime.object_store import SPARE_MIN_BYTES, ObjectStore
from runtime.tls import TLS_NAME, ClusterTls

_LEN = struct.Struct("!I")
_SIZE = struct.Struct("!q")  # object size, or -1: not here
RECV_CHUNK = 32 * 1024 * 1024
TLS_SEND_CHUNK = 4 * 1024 * 1024


class ObjectTransfer:
    def __init__(self, store: ObjectStore, shm_dir: str, token: str,
                 node_data_address: Callable[[str], str | None], node_id: str = "",
                 tls: ClusterTls | None = None) -> None:
        self.node_id = node_id
        self.tls = tls  # when the cluster has TLS: both ends of every transfer use it
        self.store = store
        self.shm_dir = shm_dir
        self.token = token
        self.node_data_address = node_data_address  # node_id -> "host:data_port" of a live node
        self._pulls: dict[str, asyncio.Future[str]] = {}
        self.copies: dict[str, set[str]] = {}  # object id -> nodes that pulled it from here
        self.bytes_received = 0
        self.bytes_sent = 0
        self._unauthenticated = Unauthenticated()

    # -- receiving ------------------------------------------------------------------------------
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
        address = self.node_data_address(node_id)
        if address is None:
            raise ObjectLostError(f"object {object_id} was on node {node_id}, which is no longer alive")
        loop = asyncio.get_running_loop()
        try:
            size = await loop.run_in_executor(None, self._receive, address, object_id, loop)
        except (OSError, EOFError, AuthenticationError) as exc:
            raise ObjectLostError(f"could not fetch object {object_id} from node {node_id}: {exc}") from None
        self.bytes_received += size
        self.store.add(object_id, size, primary=False)
        return self.store.get_path(object_id)

    def _receive(self, address: str, object_id: str, loop: asyncio.AbstractEventLoop) -> int:
        """Blocking (an executor thread): request the object, read it into a .tmp file (a spare
        of the store's when it has one of about that size), seal it by rename. Returns its size."""
        host, _, port = address.rpartition(":")
        with self._dial(host, int(port)) as sock:
            ours = new_nonce()
            _send_json(sock, {"object_id": object_id, "node_id": self.node_id, "nonce": ours})
            challenge = _recv_json(sock)
            theirs = challenge.get("challenge")
            if not (is_nonce(theirs) and proof_ok(self.token, challenge.get("proof"), Role.SERVER,
                                                  Channel.DATA, ours, str(theirs), object_id)):
                raise AuthenticationError(
                    f"{address} did not prove it holds this cluster's token; nothing was taken from it"
                )
            _send_json(sock, {"proof": proof(self.token, Role.CLIENT, Channel.DATA, ours, str(theirs), object_id)})
            (size,) = _SIZE.unpack(_recv_exact(sock, _SIZE.size))
            if size < 0:
                raise OSError(f"the node does not have object {object_id}")
            tmp = shm.tmp_path(self.shm_dir, object_id)
            fd = self._open_destination(tmp, size, loop)
            try:
                # recv into one reusable buffer, pwrite into the file: fresh tmpfs pages take
                # writes ~2x faster than page faults through a mapping (measured in shm.py)
                buffer = bytearray(min(RECV_CHUNK, max(size, 1)))
                view = memoryview(buffer)
                got = 0
                while got < size:
                    n = sock.recv_into(view, min(len(buffer), size - got))
                    if n == 0:
                        raise EOFError(f"connection closed after {got} of {size} bytes")
                    written = 0
                    while written < n:
                        written += os.pwrite(fd, view[written:n], got + written)
                    got += n
                os.close(fd)
                fd = -1
                os.rename(tmp, shm.object_path(self.shm_dir, object_id))
            finally:
                if fd >= 0:
                    os.close(fd)
                shm.unlink_if_exists(tmp)
        return size

    def _dial(self, host: str, port: int) -> socket.socket:
        sock = socket.create_connection((host, port), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        if self.tls is None:
            return sock
        try:  # the TLS socket takes the descriptor over
            return self.tls.client.wrap_socket(sock, server_hostname=TLS_NAME)
        except BaseException:
            sock.close()
            raise

    def _open_destination(self, tmp: str, size: int, loop: asyncio.AbstractEventLoop) -> int:
        spare = None
        if size >= SPARE_MIN_BYTES:  # the store lives on the loop's thread: ask it there
            spare = asyncio.run_coroutine_threadsafe(self._take_spare(size), loop).result(10)
        if spare is not None:
            try:
                os.rename(spare, tmp)
                fd = os.open(tmp, os.O_WRONLY)
                os.ftruncate(fd, size)  # a larger spare gives its tail back
                return fd
            except OSError:
                shm.unlink_if_exists(spare)
                shm.unlink_if_exists(tmp)
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    async def _take_spare(self, size: int) -> str | None:
        return self.store.take_spare(size)

    # -- sending --------------------------------------------------------------------------------
    async def serve(self, host: str, port: int) -> asyncio.AbstractServer:
        if self.tls is None:
            return await asyncio.start_server(self._handle, host, port)
        return await asyncio.start_server(self._handle, host, port, ssl=self.tls.server,
                                          ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        key = id(writer)
        self._unauthenticated.admit(key, writer.transport.abort)
        try:
            request = await asyncio.wait_for(self._handshake(reader, writer), HANDSHAKE_TIMEOUT_S)
            self._unauthenticated.done(key)
            if request is None:
                return  # refused: no reply, connection closed
            object_id = str(request.get("object_id", ""))
            if await self._send_object(object_id, writer) and request.get("node_id"):
                self.copies.setdefault(object_id, set()).add(str(request["node_id"]))
        except (asyncio.IncompleteReadError, ValueError, ConnectionError, TimeoutError):
            pass
        finally:
            self._unauthenticated.done(key)
            writer.close()

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> dict[str, object] | None:
        """The puller's request once it has proven itself, else None."""
        request = await _read_request(reader)
        if request is None or not is_nonce(request.get("nonce")):
            return None
        object_id = str(request.get("object_id", ""))
        nonces = (str(request["nonce"]), new_nonce())
        challenge = {"challenge": nonces[1],
                     "proof": proof(self.token, Role.SERVER, Channel.DATA, *nonces, object_id)}
        data = json.dumps(challenge).encode()
        writer.write(_LEN.pack(len(data)) + data)
        await writer.drain()
        answer = await _read_request(reader)
        if answer is None or not proof_ok(self.token, answer.get("proof"), Role.CLIENT,
                                          Channel.DATA, *nonces, object_id):
            return None
        return request

    async def _send_object(self, object_id: str, writer: asyncio.StreamWriter) -> bool:
        try:
            path = self.store.get_path(object_id)
        except shm.ObjectNotFoundError:
            writer.write(_SIZE.pack(-1))
            await writer.drain()
            return False
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            writer.write(_SIZE.pack(size))
            await writer.drain()
            if self.tls is None:
                loop = asyncio.get_running_loop()
                await loop.sendfile(writer.transport, f, 0, size)  # zero-copy where the OS allows
            else:
                # sendfile(2) cannot encrypt, and asyncio's fallback goes 16 KiB at a time through
                # a thread (0.09 GB/s here): big reads from shared memory instead
                while chunk := f.read(TLS_SEND_CHUNK):
                    writer.write(chunk)
                    await writer.drain()
        self.bytes_sent += size
        return True


async def _read_request(reader: asyncio.StreamReader) -> dict[str, object] | None:
    """The first frame: a small JSON object, or None for anything else."""
    (length,) = _LEN.unpack(await reader.readexactly(_LEN.size))
    if length > 4096:
        return None  # not a rayctl request
    request = json.loads(await reader.readexactly(length))
    return request if isinstance(request, dict) else None


def _send_json(sock: socket.socket, message: dict[str, object]) -> None:
    data = json.dumps(message).encode()
    sock.sendall(_LEN.pack(len(data)) + data)


def _recv_json(sock: socket.socket) -> dict[str, object]:
    (length,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
    try:
        if length > 4096:
            raise ValueError
        message = json.loads(_recv_exact(sock, length))
        if not isinstance(message, dict):
            raise ValueError
    except ValueError:
        raise AuthenticationError("the peer is not a rayctl data plane") from None
    return message


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return bytes(data)


"""The direct transport: length-prefixed pickled messages over TCP between core workers and to the
local raylet. gRPC costs ~1 ms a call here, this path ~0.05 ms, so tasks and actor calls use it.

Every connection starts with a handshake (see `_handshake`): both sides prove they hold the cluster
token by challenge and response (runtime/auth.py) without sending it, the server first, so a
client never sends a request to, or unpickles a byte from, a listener that cannot prove it; the
server checks the versions and the client's proof *before* unpickling anything. Only
authenticated peers ever get a pickled byte read. Until then a peer gets the caps of
runtime/listener_caps.py: one frame of at most 64 KiB, 5 s to send it, and a listener keeps at
most 128 such connections (the oldest is dropped for a new one).

Messages are tuples:  ("req", rid, method, payload)  ->  ("rep", rid, ok, payload)
                      ("msg", method, payload)        (one-way)
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import pickle
import struct
from collections.abc import Callable
from typing import Any

from runtime.auth import Channel, Role, is_nonce, new_nonce, proof, proof_ok
from runtime.constants import PROTOCOL_VERSION, PYTHON_VERSION, RAYCTL_VERSION
from runtime.exceptions import AuthenticationError, VersionMismatchError
from runtime.listener_caps import HANDSHAKE_FRAME_MAX, HANDSHAKE_TIMEOUT_S, Unauthenticated
from runtime.tls import TLS_NAME, ClusterTls

log = logging.getLogger(__name__)

_LEN = struct.Struct("!I")
_MAGIC = b"RAYCTL/1"

Handler = Callable[["Connection", str, Any], Any]


def local_versions() -> dict[str, Any]:
    return {"python": PYTHON_VERSION, "rayctl": RAYCTL_VERSION, "protocol": PROTOCOL_VERSION}


def version_mismatch(theirs: dict[str, Any], what: str) -> str | None:
    """A message naming both sides when `theirs` differs from ours, else None."""
    ours = local_versions()
    for key in ("protocol", "rayctl", "python"):
        if theirs.get(key) != ours[key]:
            return (
                f"version mismatch with {what}: it runs {key} {theirs.get(key)!r}, this process "
                f"runs {key} {ours[key]!r} (python {ours['python']}, rayctl {ours['rayctl']}, "
                f"protocol {ours['protocol']}); use the same Python and rayctl on every node and driver"
            )
    return None


class ConnectionLost(ConnectionError):
    pass


class Connection(asyncio.Protocol):
    """One framed, authenticated connection (either side)."""

    def __init__(
        self,
        handler: Handler | None,
        token: str,
        server_side: bool,
        unauthenticated: Unauthenticated | None = None,
    ) -> None:
        self._handler = handler
        self._token = token
        self._server_side = server_side
        self._unauthenticated = unauthenticated  # the listener's, server side
        self._deadline: asyncio.TimerHandle | None = None
        self._buf = bytearray()
        self._authed = False
        self._nonce = "" if server_side else new_nonce()  # the client's, for the handshake
        self._nonces: tuple[str, str] | None = None  # (client's, ours) once challenged, server side
        self._next_rid = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_event_loop().create_future()
        self.handshake_done: asyncio.Future[None] = asyncio.get_event_loop().create_future()
        self.peer_info: dict[str, Any] = {}
        self.on_close: list[Callable[[Connection], None]] = []
        self.context: dict[str, Any] = {}  # per-connection state a handler may keep

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        if self._server_side:
            if self._unauthenticated is not None:
                self._unauthenticated.admit(id(self), transport.abort)
            self._deadline = asyncio.get_event_loop().call_later(
                HANDSHAKE_TIMEOUT_S, self._handshake_overdue
            )

    def _handshake_overdue(self) -> None:
        if not self._authed and self.transport is not None:
            log.info("closed a connection that sent no handshake in %g s", HANDSHAKE_TIMEOUT_S)
            self.transport.abort()

    def _left_the_handshake(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._unauthenticated is not None:
            self._unauthenticated.done(id(self))

    def connection_lost(self, exc: Exception | None) -> None:
        self._left_the_handshake()
        self._buf = bytearray()
        err = ConnectionLost(f"connection lost: {exc}" if exc else "connection closed")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()
        if not self.handshake_done.done():
            self.handshake_done.set_exception(err)
            self.handshake_done.exception()  # mark retrieved
        if not self.closed.done():
            self.closed.set_result(None)
        for cb in self.on_close:
            try:
                cb(self)
            except Exception:
                log.exception("on_close callback failed")

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if not self._authed and size > HANDSHAKE_FRAME_MAX:
                self._refuse(f"a {size}-byte frame before the handshake")
                self._buf = bytearray()
                return
            if n - pos - 4 < size:
                break
            frame = bytes(buf[pos + 4 : pos + 4 + size])
            pos += 4 + size
            if not self._authed:
                if not self._handshake(frame):
                    return
                continue
            self._dispatch(pickle.loads(frame))
        if pos:
            del buf[:pos]

    # -- handshake ----------------------------------------------------------------------------
    # client: hello {magic, versions, info, nonce}
    # server: {ok, challenge, proof, versions}: proof = HMAC(token; server, both nonces), or a
    #         refusal (not rayctl, versions differ)
    # client: checks the proof before anything else; then {proof}: HMAC(token; client, ...)
    # server: checks that proof; only then is a pickled frame read from this peer.
    # The client may send requests right behind its proof: it has already checked the server.
    def _handshake(self, frame: bytes) -> bool:
        try:
            info = json.loads(frame.decode())
        except (UnicodeDecodeError, ValueError):
            return self._refuse("garbage instead of a rayctl handshake")
        if not isinstance(info, dict):
            return self._refuse("garbage instead of a rayctl handshake")
        return self._server_step(info) if self._server_side else self._client_step(info)

    def _server_step(self, info: dict[str, Any]) -> bool:
        if self._nonces is None:  # the hello
            if info.get("magic") != _MAGIC.decode():
                return self._refuse("not a rayctl peer")
            versions = info.get("versions")
            problem = version_mismatch(versions if isinstance(versions, dict) else {}, "this node")
            if problem:
                return self._refuse(problem)
            if not is_nonce(info.get("nonce")):
                return self._refuse("a handshake without a nonce: the peer runs an older rayctl")
            peer_info = info.get("info")
            self.peer_info = peer_info if isinstance(peer_info, dict) else {}
            self._nonces = (info["nonce"], new_nonce())
            reply = {
                "ok": True,
                "challenge": self._nonces[1],
                "proof": proof(self._token, Role.SERVER, Channel.DIRECT, *self._nonces),
                "versions": local_versions(),
            }
            self._write_raw(json.dumps(reply).encode())
            return True
        if not proof_ok(self._token, info.get("proof"), Role.CLIENT, Channel.DIRECT, *self._nonces):
            return self._refuse("missing or wrong cluster token")
        self._authenticated()
        return True

    def _client_step(self, info: dict[str, Any]) -> bool:
        if not info.get("ok"):
            err: Exception = AuthenticationError(str(info.get("error", "refused")))
            if "version mismatch" in str(info.get("error", "")):
                err = VersionMismatchError(info["error"])
            self.handshake_done.set_exception(err)
            return False
        challenge = info.get("challenge")
        if not (
            is_nonce(challenge)
            and proof_ok(self._token, info.get("proof"), Role.SERVER, Channel.DIRECT,
                         self._nonce, str(challenge))
        ):
            self.handshake_done.set_exception(AuthenticationError(
                "the peer did not prove it holds this cluster's token (it is not part of this "
                "cluster, or it was started with another token); nothing more was sent to it"
            ))
            if self.transport is not None:
                self.transport.abort()
            return False
        answer = proof(self._token, Role.CLIENT, Channel.DIRECT, self._nonce, str(challenge))
        self._write_raw(json.dumps({"proof": answer}).encode())
        self._authenticated()
        return True

    def _authenticated(self) -> None:
        self._authed = True
        self._left_the_handshake()
        if not self.handshake_done.done():
            self.handshake_done.set_result(None)

    def _refuse(self, reason: str) -> bool:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        log.warning("refused connection from %s: %s", peer, reason)
        self._write_raw(json.dumps({"ok": False, "error": reason}).encode())
        if self.transport:
            self.transport.close()
        return False

    def start_client_handshake(self, info: dict[str, Any]) -> None:
        hello = {
            "magic": _MAGIC.decode(),
            "versions": local_versions(),
            "info": info,
            "nonce": self._nonce,
        }
        self._write_raw(json.dumps(hello).encode())

    # -- sending ----------------------------------------------------------------------------
    def _write_raw(self, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionLost("connection closed")
        self.transport.write(_LEN.pack(len(payload)) + payload)

    def _write(self, msg: tuple[Any, ...]) -> None:
        data = pickle.dumps(msg, protocol=5)
        if self.transport is None or self.transport.is_closing():
            raise ConnectionLost("connection closed")
        if len(data) > 65536:
            self.transport.writelines((_LEN.pack(len(data)), data))
        else:
            self.transport.write(_LEN.pack(len(data)) + data)

    def send(self, method: str, payload: Any = None) -> None:
        """One-way message."""
        self._write(("msg", method, payload))

    def request(self, method: str, payload: Any = None) -> asyncio.Future[Any]:
        """Send a request; the future resolves with the reply payload or raises its error."""
        self._next_rid += 1
        rid = self._next_rid
        fut: asyncio.Future[Any] = asyncio.get_event_loop().create_future()
        self._pending[rid] = fut
        try:
            self._write(("req", rid, method, payload))
        except ConnectionLost:
            self._pending.pop(rid, None)
            raise
        return fut

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    # -- receiving --------------------------------------------------------------------------
    def _dispatch(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "rep":
            fut = self._pending.pop(msg[1], None)
            if fut is not None and not fut.done():
                if msg[2]:
                    fut.set_result(msg[3])
                else:
                    fut.set_exception(
                        msg[3] if isinstance(msg[3], BaseException) else RuntimeError(msg[3])
                    )
            return
        if self._handler is None:
            return
        if kind == "msg":
            self._run_handler(None, msg[1], msg[2])
        elif kind == "req":
            self._run_handler(msg[1], msg[2], msg[3])

    def _run_handler(self, rid: int | None, method: str, payload: Any) -> None:
        assert self._handler is not None
        try:
            result = self._handler(self, method, payload)
        except Exception as exc:  # noqa: BLE001 - errors go back to the caller
            if rid is None:
                log.exception("handler for %s failed", method)
            else:
                self._reply(rid, False, exc)
            return
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            task = asyncio.ensure_future(result)
            if rid is not None:
                task.add_done_callback(functools.partial(self._reply_from_task, rid))
            else:
                task.add_done_callback(_log_task_error)
        elif rid is not None:
            self._reply(rid, True, result)

    def _reply_from_task(self, rid: int, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            self._reply(rid, False, RuntimeError("cancelled"))
        elif task.exception() is not None:
            self._reply(rid, False, task.exception())
        else:
            self._reply(rid, True, task.result())

    def _reply(self, rid: int, ok: bool, payload: Any) -> None:
        try:
            self._write(("rep", rid, ok, payload))
        except ConnectionLost:
            pass
        except Exception as exc:  # an unpicklable error or result: say so instead of hanging
            self._write(("rep", rid, False, RuntimeError(f"cannot send reply: {exc!r}")))


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("message handler failed", exc_info=task.exception())


async def serve(
    host: str, port: int, token: str, handler: Handler, tls: ClusterTls | None = None
) -> asyncio.AbstractServer:
    """Listen on `host:port`; with `tls`, every connection is TLS first (its handshake within the
    same deadline as ours), then our handshake inside it."""
    loop = asyncio.get_running_loop()
    unauthenticated = Unauthenticated()
    if tls is None:
        return await loop.create_server(
            lambda: Connection(handler, token, True, unauthenticated), host, port
        )
    return await loop.create_server(
        lambda: Connection(handler, token, True, unauthenticated), host, port,
        ssl=tls.server, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
    )


async def connect(
    address: str,
    token: str,
    handler: Handler | None = None,
    info: dict[str, Any] | None = None,
    timeout_s: float = 10.0,
    tls: ClusterTls | None = None,
) -> Connection:
    """Open an authenticated connection to `host:port` (over TLS with `tls`, verifying the
    cluster's CA and its fixed name)."""
    host, _, port = address.rpartition(":")
    loop = asyncio.get_running_loop()
    if tls is None:
        opening = loop.create_connection(lambda: Connection(handler, token, False), host, int(port))
    else:
        opening = loop.create_connection(
            lambda: Connection(handler, token, False), host, int(port),
            ssl=tls.client, server_hostname=TLS_NAME, ssl_handshake_timeout=timeout_s,
        )
    _, conn = await asyncio.wait_for(opening, timeout_s)
    conn.start_client_handshake(info or {})
    try:
        await asyncio.wait_for(conn.handshake_done, timeout_s)
    except AuthenticationError as exc:
        conn.close()
        raise AuthenticationError(f"{address}: {exc}") from None
    return conn


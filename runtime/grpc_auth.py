"""Mutual authentication on gRPC, and the one place gRPC channels are opened.

Every call carries `rayctl-auth: <nonce>.<unix ms>.<proof>`, the proof an HMAC of the token over
the client's role, the nonce, the time and the method (runtime/auth.py), never the token. The
server refuses (UNAUTHENTICATED, before any handler runs) a call whose proof is wrong, whose time
is more than FRESH_S away from its own clock (the message names the skew) or whose nonce it has
already seen in that window, so a call overheard on the wire cannot be replayed. Its trailing
metadata carries `rayctl-proof`, the server's HMAC over the same nonce, time and method; the
client takes a successful reply only with that proof, so a listener without the token where a
client dials gets no token and can hand the client nothing (errors pass, as code and text only).

Without TLS a party on the network path can still read and alter calls in flight; this keeps the
token off the wire and impostors out, TLS keeps the path private.

Streams (asyncio only; the node sync stream) carry the same header when they open; the server's
proof comes in the initial metadata, checked before the client reads a message.

Channels: `open_channel` (blocking) and `open_aio_channel` (asyncio) are the only ways the
project dials a gRPC server; servers install `ProofServerInterceptor`.
"""

from __future__ import annotations

import collections
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from runtime.auth import Channel, Role, is_nonce, new_nonce, proof, proof_ok
from runtime.constants import GRPC_CHANNEL_OPTIONS
from runtime.tls import TLS_NAME, ClusterTls

log = logging.getLogger(__name__)

AUTH_KEY = "rayctl-auth"  # client -> server, on every call
PROOF_KEY = "rayctl-proof"  # server -> client, in the trailing metadata of every answered call
FRESH_S = 30.0  # how far a call's time may be from the server's clock
WRONG_TOKEN = "missing or wrong cluster token"


def _sign(token: str, method: str, clock: Callable[[], float]) -> tuple[str, str, str]:
    """(nonce, millis, header value) for one call."""
    nonce, millis = new_nonce(), str(int(clock() * 1000))
    return nonce, millis, f"{nonce}.{millis}.{proof(token, Role.CLIENT, Channel.GRPC, nonce, millis, method)}"


def _server_proof(token: str, nonce: str, millis: str, method: str) -> str:
    return proof(token, Role.SERVER, Channel.GRPC, nonce, millis, method)


class NotProven(grpc.RpcError):
    """A successful reply from a server that did not prove it holds the cluster token."""

    def __init__(self, method: str) -> None:
        self._details = (
            f"the server answering {method} did not prove it holds this cluster's token (it is "
            "not this cluster's, or it runs another token); its reply was dropped"
        )
        super().__init__(self._details)

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAUTHENTICATED

    def details(self) -> str:
        return self._details


def _proven(token: str, metadata: Any, nonce: str, millis: str, method: str) -> bool:
    for key, value in metadata or ():
        if key == PROOF_KEY:
            return proof_ok(token, value, Role.SERVER, Channel.GRPC, nonce, millis, method)
    return False


class _SignedFuture:
    """A call's future whose successful result is given out only with the server's proof."""

    def __init__(self, call: Any, token: str, nonce: str, millis: str, method: str) -> None:
        self._call = call
        self._check = (token, nonce, millis, method)

    def _not_proven(self) -> NotProven | None:
        token, nonce, millis, method = self._check
        if _proven(token, self._call.trailing_metadata(), nonce, millis, method):
            return None
        return NotProven(method)

    def result(self, timeout: float | None = None) -> Any:
        response = self._call.result(timeout)  # an error reply raises here, as it is
        problem = self._not_proven()
        if problem is not None:
            raise problem
        return response

    def exception(self, timeout: float | None = None) -> BaseException | None:
        error = self._call.exception(timeout)
        return error if error is not None else self._not_proven()

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self._call.add_done_callback(lambda _call: fn(self))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class _Method:
    """One blocking unary method: signs each call, checks each successful reply."""

    def __init__(self, inner: Any, method: str, token: str, clock: Callable[[], float]) -> None:
        self._inner, self._method, self._token, self._clock = inner, method, token, clock

    def with_call(self, request: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        nonce, millis, value = _sign(self._token, self._method, self._clock)
        response, call = self._inner.with_call(
            request, timeout=timeout, metadata=((AUTH_KEY, value),), **kwargs
        )
        if not _proven(self._token, call.trailing_metadata(), nonce, millis, self._method):
            raise NotProven(self._method)
        return response, call

    def __call__(self, request: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        return self.with_call(request, timeout, **kwargs)[0]

    def future(self, request: Any, timeout: float | None = None, **kwargs: Any) -> _SignedFuture:
        nonce, millis, value = _sign(self._token, self._method, self._clock)
        call = self._inner.future(request, timeout=timeout, metadata=((AUTH_KEY, value),),
                                  **kwargs)
        return _SignedFuture(call, self._token, nonce, millis, self._method)


class _AioMethod:
    """The asyncio twin of _Method: `await method(request, timeout=...)`."""

    def __init__(self, inner: Any, method: str, token: str, clock: Callable[[], float]) -> None:
        self._inner, self._method, self._token, self._clock = inner, method, token, clock

    async def __call__(self, request: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        nonce, millis, value = _sign(self._token, self._method, self._clock)
        call = self._inner(request, timeout=timeout, metadata=((AUTH_KEY, value),), **kwargs)
        response = await call  # an error reply raises here, as it is
        if not _proven(self._token, await call.trailing_metadata(), nonce, millis, self._method):
            empty = grpc.aio.Metadata()
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAUTHENTICATED, empty, empty,
                                       details=NotProven(self._method).details())
        return response


class _AioStreamMethod:
    """A bidirectional stream (asyncio only): `call = await method.open()`, then `call.write` /
    `call.read`. The server's proof comes in the initial metadata and is checked before the
    caller reads anything."""

    def __init__(self, inner: Any, method: str, token: str, clock: Callable[[], float]) -> None:
        self._inner, self._method, self._token, self._clock = inner, method, token, clock

    async def open(self, timeout: float | None = None) -> Any:
        nonce, millis, value = _sign(self._token, self._method, self._clock)
        call = self._inner(timeout=timeout, metadata=((AUTH_KEY, value),))
        initial = await call.initial_metadata()
        if _proven(self._token, initial, nonce, millis, self._method):
            return call
        empty = grpc.aio.Metadata()
        if call.done():  # refused (UNAUTHENTICATED, ...) or failed before it opened: say why
            code = await call.code()
            if code != grpc.StatusCode.OK:
                raise grpc.aio.AioRpcError(code, empty, empty, details=await call.details())
        call.cancel()
        raise grpc.aio.AioRpcError(grpc.StatusCode.UNAUTHENTICATED, empty, empty,
                                   details=NotProven(self._method).details())


class _ProvenChannel:
    """A channel whose methods prove and require the token. Plain wrappers, not grpc's
    interceptors: those cost ~100 us a call here."""

    def __init__(self, inner: Any, token: str, clock: Callable[[], float], aio: bool) -> None:
        self._inner, self._token, self._clock, self._aio = inner, token, clock, aio
        self._method_class = _AioMethod if aio else _Method

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        inner = self._inner.unary_unary(method, *args, **kwargs)
        return self._method_class(inner, method, self._token, self._clock)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if not self._aio:
            raise TypeError("rayctl opens streams on asyncio channels only")
        inner = self._inner.stream_stream(method, *args, **kwargs)
        return _AioStreamMethod(inner, method, self._token, self._clock)

    def __getattr__(self, name: str) -> Any:  # close, subscribe, channel_ready, ...
        return getattr(self._inner, name)

    def __enter__(self) -> _ProvenChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()

    async def __aenter__(self) -> _ProvenChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._inner.close()


def open_channel(
    address: str, token: str, options: Sequence[tuple[str, Any]] = GRPC_CHANNEL_OPTIONS,
    clock: Callable[[], float] = time.time, tls: ClusterTls | None = None,
) -> Any:
    """A blocking channel to a rayctl gRPC server whose calls prove, and require, the token
    (over TLS with `tls`, verifying the cluster's CA and its fixed name)."""
    if tls is None:
        inner = grpc.insecure_channel(address, options=list(options))
    else:
        inner = grpc.secure_channel(address, _channel_credentials(tls), _tls_options(options))
    return _ProvenChannel(inner, token, clock, aio=False)


def open_aio_channel(
    address: str, token: str, options: Sequence[tuple[str, Any]] = GRPC_CHANNEL_OPTIONS,
    clock: Callable[[], float] = time.time, tls: ClusterTls | None = None,
) -> Any:
    """The asyncio twin of `open_channel`."""
    if tls is None:
        inner = grpc.aio.insecure_channel(address, options=list(options))
    else:
        inner = grpc.aio.secure_channel(address, _channel_credentials(tls), _tls_options(options))
    return _ProvenChannel(inner, token, clock, aio=True)


def add_port(server: Any, address: str, tls: ClusterTls | None = None) -> int:
    """Listen on `address` (TLS with `tls`); the bound port."""
    if tls is None:
        return int(server.add_insecure_port(address))
    credentials = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)])
    return int(server.add_secure_port(address, credentials))


def _channel_credentials(tls: ClusterTls) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=tls.ca_pem)


def _tls_options(options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    # the certificate names the cluster, not the address dialled (node IPs come later)
    return [*options, ("grpc.ssl_target_name_override", TLS_NAME)]


class _SeenNonces:
    """Nonces of calls accepted within the freshness window (a replay of one is refused)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._order: collections.deque[tuple[float, str]] = collections.deque()

    def first_time(self, nonce: str, now: float) -> bool:
        while self._order and self._order[0][0] < now:
            self._seen.discard(self._order.popleft()[1])
        if nonce in self._seen:
            return False
        self._seen.add(nonce)
        # a call stays fresh up to FRESH_S after its own time, which is at most FRESH_S ahead
        self._order.append((now + 2 * FRESH_S, nonce))
        return True


class ProofServerInterceptor(grpc.aio.ServerInterceptor):
    """Refuses (UNAUTHENTICATED, with the reason) every call without a fresh, right proof, and
    answers the rest with the server's own proof in the trailing metadata."""

    def __init__(
        self, token: str, clock: Callable[[], float] = time.time, cluster_id: str = ""
    ) -> None:
        self._token = token
        self._clock = clock
        # said to callers with a wrong proof, so one holding a stale address can be told so
        self._wrong_token = f"{WRONG_TOKEN} (this is cluster {cluster_id})" if cluster_id else WRONG_TOKEN
        self._seen = _SeenNonces()
        self._deny: dict[tuple[str, bool], Any] = {}

    def _denial(self, reason: str, stream: bool) -> Any:
        handler = self._deny.get((reason, stream))
        if handler is None:

            async def deny(_request: Any, context: grpc.aio.ServicerContext) -> Any:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

            handler = (grpc.stream_stream_rpc_method_handler(deny) if stream
                       else grpc.unary_unary_rpc_method_handler(deny))
            if len(self._deny) < 64:  # the fixed reasons; a skew message varies
                self._deny[(reason, stream)] = handler
        return handler

    def _check(self, method: str, metadata: Any) -> tuple[str, str] | str:
        """(nonce, millis) of a call that proved itself, or why it is refused."""
        value = next((v for k, v in metadata or () if k == AUTH_KEY), None)
        if not isinstance(value, str) or value.count(".") != 2:
            return self._wrong_token
        nonce, millis, given = value.split(".")
        if not is_nonce(nonce) or not millis.isdigit() or len(millis) > 15:
            return self._wrong_token
        if not proof_ok(self._token, given, Role.CLIENT, Channel.GRPC, nonce, millis, method):
            return self._wrong_token
        now = self._clock()
        skew = int(millis) / 1000 - now
        if abs(skew) > FRESH_S:
            return (
                f"the caller's clock is {skew:+.0f} s off this server's (more than {FRESH_S:g} s "
                "is refused, as a replay could be): synchronise the clocks (NTP)"
            )
        if not self._seen.first_time(nonce, now):
            return "a replayed call (its nonce was already used)"
        return nonce, millis

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        method = handler_call_details.method
        verdict = self._check(method, handler_call_details.invocation_metadata)
        if isinstance(verdict, str):
            log.warning("refused a call to %s: %s", method, verdict)
            handler = await continuation(handler_call_details)
            return self._denial(verdict, handler is not None and handler.stream_stream is not None)
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        answer = ((PROOF_KEY, _server_proof(self._token, *verdict, method)),)
        if handler.stream_stream is not None:  # the proof opens the stream, before any message
            streaming = handler.stream_stream

            async def proven_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                await context.send_initial_metadata(answer)
                return await streaming(requests, context)

            return handler._replace(stream_stream=proven_stream)
        if handler.unary_unary is None:
            return handler
        behavior = handler.unary_unary

        async def proven(request: Any, context: grpc.aio.ServicerContext) -> Any:
            context.set_trailing_metadata(answer)
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result

        return handler._replace(unary_unary=proven)

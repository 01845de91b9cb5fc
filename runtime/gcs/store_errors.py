"""What a caller hears when the GCS's store (Redis) does not answer: every gRPC method's Redis
error becomes UNAVAILABLE with a message that names the store, so drivers and raylets retry it
as they retry a GCS restart, and nobody sees a raw redis exception. (Redis runs under the head's
supervisor, which restarts it from its append-only file within a second.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import grpc
import redis.exceptions

log = logging.getLogger("rayctl.gcs")

# What a Redis that is down, restarting or still loading its append-only file raises.
STORE_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
)


def store_down_message(exc: BaseException) -> str:
    return (
        f"the cluster's control store (Redis on the head) is unreachable ({exc}); it is "
        "restarted by the head's supervisor: retry, or check the head with `rayctl status`"
    )


class StoreErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns a Redis outage inside any unary method into UNAVAILABLE (retried by callers)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        behaviour = handler.unary_unary

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await behaviour(request, context)
            except STORE_DOWN as exc:
                log.warning("%s: the store did not answer: %s", method, exc)
                await context.abort(grpc.StatusCode.UNAVAILABLE, store_down_message(exc))

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


# How long a background loop that failed waits before it runs again (a Redis restart takes
# ~0.3 s here; a loop that fails at once again backs off to `LOOP_RETRY_MAX_S`).
LOOP_RETRY_S = 0.2
LOOP_RETRY_MAX_S = 5.0


async def keep_running(name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a GCS background loop forever: one that raises (a Redis outage, a bug hit by one
    record) is logged and started again, so no single failure ends health checks, demand
    notices or placement for good."""
    delay = LOOP_RETRY_S
    while True:
        started = asyncio.get_running_loop().time()
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except STORE_DOWN as exc:
            log.warning(
                "the %s loop stopped: the store did not answer (%s); again in %.1f s",
                name,
                exc,
                delay,
            )
        except Exception:  # noqa: BLE001 - any other failure must not end the loop either
            log.exception("the %s loop failed; again in %.1f s", name, delay)
        ran_s = asyncio.get_running_loop().time() - started
        delay = LOOP_RETRY_S if ran_s > LOOP_RETRY_MAX_S else min(delay * 2, LOOP_RETRY_MAX_S)
        await asyncio.sleep(delay)

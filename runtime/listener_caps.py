"""What a listener allows a peer that has not authenticated yet: one small handshake frame, a few
seconds to send it, and a place among at most MAX_UNAUTHENTICATED such connections (a new one
past the cap drops the oldest). Shared by the direct transport (runtime/transport.py: raylets,
core workers) and the object data plane (runtime/raylet/transfer.py), so that garbage, an
endless length prefix or thousands of idle sockets cost a node a few KiB and are gone within the
deadline, while real peers, which authenticate in their first frame, never notice."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

log = logging.getLogger(__name__)

HANDSHAKE_FRAME_MAX = 64 * 1024  # bytes a peer may send before it has authenticated
HANDSHAKE_TIMEOUT_S = 5.0  # to send them
MAX_UNAUTHENTICATED = 128  # per listener; the oldest goes first

# The gRPC servers' (GCS, raylet) share of the same: gRPC core does the framing, so its own caps.
GRPC_IDLE_S = 10.0  # a gRPC connection with no call in flight for this long is closed
GRPC_SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.so_reuseport", 0),
    # a connection must finish its HTTP/2 handshake within the deadline
    ("grpc.server_handshake_timeout_ms", int(HANDSHAKE_TIMEOUT_S * 1000)),
    # one with no call in flight is closed (GOAWAY; real clients reconnect on their next call)
    ("grpc.max_connection_idle_ms", int(GRPC_IDLE_S * 1000)),
    # headers, where the proof travels, and messages: read before a call is refused, so bounded
    ("grpc.max_metadata_size", 16 * 1024),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
]


class Unauthenticated:
    """One listener's connections still in their handshake, oldest first."""

    def __init__(self, cap: int = MAX_UNAUTHENTICATED) -> None:
        self.cap = cap
        self._waiting: OrderedDict[int, Callable[[], None]] = OrderedDict()
        self.dropped = 0  # connections closed to make room

    def admit(self, key: int, close: Callable[[], None]) -> None:
        """A new connection; `close` drops it if it is still here when the cap needs room."""
        while len(self._waiting) >= self.cap:
            _, oldest = self._waiting.popitem(last=False)
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 10_000 == 0:
                log.warning(
                    "over %d connections without a handshake on one listener: dropping the "
                    "oldest (%d so far)", self.cap, self.dropped
                )
            oldest()
        self._waiting[key] = close

    def done(self, key: int) -> None:
        """Authenticated, refused or closed: no longer counts."""
        self._waiting.pop(key, None)

    def __len__(self) -> int:
        return len(self._waiting)

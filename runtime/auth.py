"""The cluster token: created at head start, stored 0600, and proven (never sent) on the direct
transport, the data plane and gRPC (runtime/grpc_auth.py) by challenge and response, both ways,
before a single pickled byte is read on either side.

A proof is a MAC keyed by the token (keyed BLAKE2b, RFC 7693: ~1 us here against ~3 us for
HMAC-SHA256) over the prover's role, the channel and both sides' fresh nonces. The role keeps a
server's answer from being reflected back as a client's; the nonces keep an old proof from being
replayed. Someone listening where a client dials learns neither the token nor anything it could
reuse, and the client sends it nothing further."""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass

from runtime.constants import TOKEN_ENV, TOKEN_FILE_ENV
from runtime.private_state import write_private_file
from runtime.tls import ClusterTls, from_pem, to_pem

log = logging.getLogger(__name__)
NONCE_HEX_LEN = 32
_HEX = re.compile("[0-9a-f]+")


class Role(enum.Enum):
    """Who is proving: the side that listens or the side that dialled."""

    SERVER = "server"
    CLIENT = "client"


class Channel(enum.Enum):
    """What a proof is for, so a proof made on one channel is worthless on another."""

    DIRECT = "direct"  # runtime/transport.py
    DATA = "data"  # runtime/raylet/transfer.py
    GRPC = "grpc"


def new_nonce() -> str:
    return secrets.token_hex(NONCE_HEX_LEN // 2)


def is_nonce(value: object) -> bool:
    return isinstance(value, str) and len(value) == NONCE_HEX_LEN and _HEX.fullmatch(value) is not None


def proof(token: str, role: Role, channel: Channel, *parts: str) -> str:
    """What `role` sends to show it holds `token` on `channel` for these nonces (and context)."""
    message = "\x00".join((role.value, channel.value, *parts)).encode()
    return hashlib.blake2b(message, key=_mac_key(token), digest_size=32).hexdigest()


@functools.lru_cache(maxsize=8)
def _mac_key(token: str) -> bytes:
    """The token as a 64-byte BLAKE2b key (the token file may hold any length)."""
    return hashlib.blake2b(token.encode(), digest_size=64, person=b"rayctl-mac-key").digest()


def proof_ok(token: str, given: object, role: Role, channel: Channel, *parts: str) -> bool:
    """Whether `given` is the proof `role` owes (compared in constant time)."""
    return isinstance(given, str) and tokens_equal(given, proof(token, role, channel, *parts))


@dataclass(frozen=True)
class Credentials:
    """What a process holds to take part in a cluster: the token, and its TLS material when the
    cluster runs TLS. Both live in the token file: the token's line, then PEM blocks."""

    token: str
    tls: ClusterTls | None = None


def create_token_file(path: str, tls: ClusterTls | None = None) -> str:
    """Write a new random token (and `tls`) to `path` with mode 0600 and return the token."""
    token = secrets.token_hex(32)
    write_token_file(path, Credentials(token, tls))
    return token


def write_token_file(path: str, credentials: Credentials) -> None:
    text = credentials.token + "\n"
    if credentials.tls is not None:
        text += to_pem(credentials.tls)
    write_private_file(path, text)


def read_credentials(path: str) -> Credentials:
    with open(path) as f:
        return parse_credentials(f.read(), f"token file {path}")


def parse_credentials(text: str, where: str) -> Credentials:
    """A token file's content: the token's line, then the TLS material if the cluster has it."""
    token = text.split("\n", 1)[0].strip()
    if not token:
        raise ValueError(f"{where} is empty")
    return Credentials(token, from_pem(text, where))


def read_token_file(path: str) -> str:
    return read_credentials(path).token


def credentials_from_env() -> Credentials | None:
    """The credentials handed over by the environment (a file path preferred over the value of
    a token, which carries no TLS material)."""
    path = os.environ.get(TOKEN_FILE_ENV)
    if path:
        return read_credentials(path)
    token = os.environ.get(TOKEN_ENV)
    return Credentials(token) if token else None


def token_from_env() -> str | None:
    """The token handed over by the environment (a file path preferred over the value)."""
    credentials = credentials_from_env()
    return credentials.token if credentials else None


def tokens_equal(a: str | bytes, b: str | bytes) -> bool:
    a_b = a.encode() if isinstance(a, str) else a
    b_b = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_b, b_b)

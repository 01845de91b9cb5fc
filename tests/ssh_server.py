"""A real SSH server for tests: asyncssh in-process on 127.0.0.1 (ephemeral port), one generated
key authorized, exec requests run by `bash -c` in a private home directory (as sshd would), SFTP
with relative paths under that home. Imported as a plain module, like `provider_contract`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

HOST = "127.0.0.1"
USER = "rayctl"
# Output a command's leftover daemon still holds is not waited for longer than this.
DRAIN_S = 1.0


@dataclass
class SSHServer:
    """What a test needs to reach the server. `home` is where commands run and `~` points."""

    port: int
    home: Path
    key_path: Path
    wrong_key_path: Path
    user: str = USER
    host: str = HOST
    commands: list[str] = field(default_factory=list)  # every exec request, in order
    connections: int = 0  # SSH connections accepted so far

    def auth(self) -> dict[str, str]:
        """The cluster YAML's `auth:` section for this server."""
        return {"ssh_user": self.user, "ssh_private_key": str(self.key_path)}


class _CountingServer(asyncssh.SSHServer):
    def __init__(self, server: SSHServer) -> None:
        self.server = server

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.server.connections += 1


class _HomeSFTPServer(asyncssh.SFTPServer):
    """Relative SFTP paths resolve under the test home, as they would under a user's home."""

    def __init__(self, chan: asyncssh.SSHServerChannel, home: Path) -> None:
        super().__init__(chan)
        self._home = os.fsencode(home)

    def map_path(self, path: bytes) -> bytes:
        return path if path.startswith(b"/") else os.path.join(self._home, path)


class _Shell:
    """Runs each exec request with bash in the home directory, streaming stdin/stdout/stderr."""

    def __init__(self, server: SSHServer) -> None:
        self.server = server
        self.children: set[asyncio.subprocess.Process] = set()

    async def handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command
        if command is None:
            process.stderr.write(b"this test server runs commands only, no shell\n")
            process.exit(1)
            return
        self.server.commands.append(command)
        env = {**os.environ, "HOME": str(self.server.home), "USER": self.server.user}
        child = await asyncio.create_subprocess_exec(
            "bash", "-c", command, cwd=self.server.home, env=env, start_new_session=True,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self.children.add(child)
        try:
            await self._serve(process, child)
        finally:
            _kill_group(child)  # the channel closed (client timeout): stop what it started
            self.children.discard(child)

    async def _serve(
        self, process: asyncssh.SSHServerProcess[bytes], child: asyncio.subprocess.Process
    ) -> None:
        assert child.stdin and child.stdout and child.stderr
        feed = asyncio.ensure_future(_feed(process.stdin, child.stdin))
        pumps = [
            asyncio.ensure_future(_pump(child.stdout, process.stdout)),
            asyncio.ensure_future(_pump(child.stderr, process.stderr)),
        ]
        code = await child.wait()
        # A daemon left behind keeps the pipes open: take what is there, do not wait for it.
        await asyncio.wait(pumps, timeout=DRAIN_S)
        for task in [feed, *pumps]:
            task.cancel()
        process.exit(code if code >= 0 else 128 - code)


async def _feed(source: asyncssh.SSHReader[bytes], sink: asyncio.StreamWriter) -> None:
    with suppress(ConnectionError, asyncssh.Error):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.close()


async def _pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
    with suppress(ConnectionError, asyncssh.Error):
        while data := await source.read(65536):
            sink.write(data)


def _kill_group(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _write_key(key: asyncssh.SSHKey, path: Path) -> None:
    key.write_private_key(str(path))
    path.chmod(0o600)  # OpenSSH's client refuses a key others can read


@contextmanager
def ssh_server(root: Path, port: int = 0, key: Path | None = None) -> Iterator[SSHServer]:
    """Start the server on its own loop thread; stop it and every command it ran at exit.
    `port` 0 picks a free one; `key` authorizes an existing private key instead of a new one."""
    home, keys = root / "home", root / "keys"
    home.mkdir(parents=True)
    keys.mkdir(mode=0o700)
    if key is None:
        key = keys / "id_ed25519"
        _write_key(asyncssh.generate_private_key("ssh-ed25519"), key)
    client_key = asyncssh.read_private_key(str(key))
    _write_key(asyncssh.generate_private_key("ssh-ed25519"), keys / "wrong_ed25519")
    server = SSHServer(port, home, key, keys / "wrong_ed25519")
    shell = _Shell(server)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-sshd", daemon=True)
    thread.start()

    async def start() -> Any:
        return await asyncssh.create_server(
            lambda: _CountingServer(server), HOST, port,
            server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
            authorized_client_keys=asyncssh.import_authorized_keys(
                client_key.export_public_key().decode()
            ),
            process_factory=shell.handle,
            sftp_factory=lambda chan: _HomeSFTPServer(chan, home),
            encoding=None,
        )

    async def stop(acceptor: Any) -> None:
        acceptor.close()
        for child in list(shell.children):
            _kill_group(child)
        await acceptor.wait_closed()

    acceptor = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    server.port = acceptor.get_port()
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(stop(acceptor), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

"""A real SSH server for tests: asyncssh in-process on 127.0.0.1 (ephemeral port), one generated
key authorized, exec requests run by `bash -c` in a private home directory (as sshd would), SFTP
with relative paths under that home. Imported as a plain module, like `provider_contract`.
Opt-in, as sshd does them: `terminals` (a client's pty request gets a real pseudo-terminal) and
`forwarding` (`ssh -L` local port forwarding)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import signal
import socket
import struct
import termios
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
    terminals: bool = False  # a pty request gets a real pseudo-terminal (else plain pipes)
    forwarding: bool = False  # direct-tcpip channels (`ssh -L`) are accepted
    forwarded: list[int] = field(default_factory=list)  # destination port of each one asked for

    def auth(self) -> dict[str, str]:
        """The cluster YAML's `auth:` section for this server."""
        return {"ssh_user": self.user, "ssh_private_key": str(self.key_path)}


class _CountingServer(asyncssh.SSHServer):
    def __init__(self, server: SSHServer) -> None:
        self.server = server

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.server.connections += 1

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        """`ssh -L`: True lets asyncssh connect to the destination itself, as sshd does."""
        self.server.forwarded.append(dest_port)
        return self.server.forwarding


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
        if self.server.terminals and process.term_type is not None:
            await self._terminal(process, command, env)
            return
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


    async def _terminal(
        self, process: asyncssh.SSHServerProcess[bytes], command: str, env: dict[str, str]
    ) -> None:
        """The command on a pseudo-terminal that is its controlling terminal (`setsid -c`), so
        an interactive shell echoes, reads lines on Enter and has job control, as under sshd."""
        master, slave = os.openpty()
        cols, rows = process.term_size[:2]
        if cols and rows:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        ctty = ["setsid", "--ctty"] if shutil.which("setsid") else []
        try:
            child = await asyncio.create_subprocess_exec(
                *ctty, "bash", "-c", command, cwd=self.server.home,
                env={**env, "TERM": process.term_type or "xterm"},
                stdin=slave, stdout=slave, stderr=slave, start_new_session=not ctty,
            )
        finally:
            os.close(slave)
        self.children.add(child)
        try:
            code = await _serve_terminal(process, child, master)
            process.exit(code if code >= 0 else 128 - code)
        finally:
            os.close(master)
            _kill_group(child)
            self.children.discard(child)


async def _serve_terminal(
    process: asyncssh.SSHServerProcess[bytes], child: asyncio.subprocess.Process, master: int
) -> int:
    loop = asyncio.get_running_loop()
    os.set_blocking(master, False)
    drained = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every holder of the terminal's other end has gone
            data = b""
        if data:
            with suppress(ConnectionError, asyncssh.Error):
                process.stdout.write(data)
        else:
            loop.remove_reader(master)
            if not drained.done():
                drained.set_result(None)

    loop.add_reader(master, readable)
    feed = asyncio.ensure_future(_feed_terminal(process.stdin, master))
    try:
        code = await child.wait()
        await asyncio.wait([drained], timeout=DRAIN_S)  # a daemon may hold the terminal
        return code
    finally:
        loop.remove_reader(master)
        feed.cancel()


async def _feed_terminal(source: asyncssh.SSHReader[bytes], master: int) -> None:
    with suppress(ConnectionError, asyncssh.Error, OSError):
        while data := await source.read(65536):
            while data:
                try:
                    data = data[os.write(master, data):]
                except BlockingIOError:
                    await asyncio.sleep(0.01)  # the terminal's input buffer is full


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
def ssh_server(
    root: Path, port: int = 0, key: Path | None = None, *, terminals: bool = False,
    forwarding: bool = False,
) -> Iterator[SSHServer]:
    """Start the server on its own loop thread; stop it and every command it ran at exit.
    `port` 0 picks a free one; `key` authorizes an existing private key instead of a new one;
    `terminals` and `forwarding` as in the module docstring (off: pty and -L requests get the
    old behaviour: pipes, refused)."""
    home, keys = root / "home", root / "keys"
    home.mkdir(parents=True)
    keys.mkdir(mode=0o700)
    if key is None:
        key = keys / "id_ed25519"
        _write_key(asyncssh.generate_private_key("ssh-ed25519"), key)
    client_key = asyncssh.read_private_key(str(key))
    _write_key(asyncssh.generate_private_key("ssh-ed25519"), keys / "wrong_ed25519")
    server = SSHServer(port, home, key, keys / "wrong_ed25519", terminals=terminals,
                       forwarding=forwarding)
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
            # asyncssh's own line editor would answer a pty request instead of a terminal.
            line_editor=not terminals,
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

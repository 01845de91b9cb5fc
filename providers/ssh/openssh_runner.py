"""`OpenSSHRunner`: the system `ssh` client with Ray's options and one multiplexed connection per
node (ControlMaster/ControlPersist), so a node's hundred setup commands pay one handshake. Files
go over rsync when it is installed, else as a tar stream on the command's stdin."""

from __future__ import annotations

import hashlib
import os
import posixpath
import shlex
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from providers.base import CommandResult, ConfigError, ProviderError
from providers.ssh.target import (
    CLIENT_TIMEOUT_MARGIN_S,
    KEEPALIVE_COUNT_MAX,
    KEEPALIVE_INTERVAL_S,
    TIMEOUT_EXIT_CODE,
    Failure,
    SSHTarget,
    classify_text,
    connect_error,
    login_relative,
    not_ready_error,
    remote_command,
    timeout_note,
)
from runtime.private_state import ensure_private_dir

SSH_ERROR_EXIT_CODE = 255  # ssh's own failures; a remote command may return it too
CONTROL_PERSIST_S = 10  # the master outlives the last command this long (Ray uses 10 s)
# Lines OpenSSH prints when it, not the remote command, failed.
_CLIENT_FAILURES = (
    "ssh: connect to host",
    "permission denied (",
    "could not resolve hostname",
    "kex_exchange_identification",
    "connection closed by",
    "connection timed out during banner exchange",
    "no such identity",
    "load key",
)


def default_control_dir(user: str) -> Path:
    """Short on purpose: a unix socket path must stay under ~100 bytes."""
    digest = hashlib.sha256(f"{os.getuid()}:{user}".encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"rayctl_ssh_{digest}"


def ssh_options(target: SSHTarget, control_dir: Path) -> list[str]:
    """The `ssh` arguments before the destination, as Ray passes them."""
    options = {
        "ConnectTimeout": f"{max(int(target.connect_timeout_s), 1)}s",
        # Fresh cluster nodes have host keys nobody has seen: do not prompt, do not record.
        "StrictHostKeyChecking": "no",
        "UserKnownHostsFile": os.devnull,
        "BatchMode": "yes",  # never prompt for a password: fail and say so
        "LogLevel": "ERROR",  # no "Permanently added ... to known hosts" in command output
        "ServerAliveInterval": str(KEEPALIVE_INTERVAL_S),
        "ServerAliveCountMax": str(KEEPALIVE_COUNT_MAX),
        "ControlMaster": "auto",
        "ControlPath": str(control_dir / "%C"),
        "ControlPersist": f"{CONTROL_PERSIST_S}s",
    }
    if target.key_path:
        options["IdentitiesOnly"] = "yes"  # a full agent would exhaust MaxAuthTries first
    if target.proxy_command:
        options["ProxyCommand"] = target.proxy_command
    args = [f"-o{name}={value}" for name, value in options.items()]
    if target.key_path:
        args += ["-i", os.path.expanduser(target.key_path)]
    return [*args, "-p", str(target.port)]


def _free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class _Forward:
    def __init__(self, proc: subprocess.Popen[bytes], local_port: int, errors: IO[bytes]) -> None:
        self._proc, self._port, self._errors = proc, local_port, errors

    @property
    def local_port(self) -> int:
        return self._port

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._errors.close()


def client_failure(exit_code: int, output: str) -> Failure | None:
    """Whether ssh itself failed (the command never ran), and how."""
    if exit_code != SSH_ERROR_EXIT_CODE:
        return None
    lowered = output.lower()
    if any(marker in lowered for marker in _CLIENT_FAILURES):
        return classify_text(output)
    return None


class OpenSSHRunner:
    """Commands and copies for one node through `ssh`. `node_env` is added to every command."""

    def __init__(
        self,
        target: SSHTarget,
        node_env: Mapping[str, str] | None = None,
        control_dir: Path | None = None,
    ) -> None:
        self.target = target
        self.node_env = dict(node_env or {})
        self.control_dir = control_dir or default_control_dir(target.user)

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
        """Raises TransientError / AuthError (naming host, user, key) when ssh cannot reach
        the node; a command's own failure is only its exit code."""
        line = remote_command(command, {**self.node_env, **(env or {})}, timeout_s)
        return self._ssh(line, timeout_s)

    def put_file(self, local_path: str, remote_path: str) -> None:
        """rsync when installed, else a tar stream; a directory's contents are merged into
        `remote_path`. `~/` and relative paths are under the login directory."""
        source = Path(local_path).expanduser()
        if not source.exists():
            raise ConfigError(f"cannot copy {local_path} to {self.target.host}: no such file")
        remote = login_relative(remote_path)
        if shutil.which("rsync"):
            self._rsync(source, remote)
        else:
            self._tar_copy(source, remote)

    def wait_ready(self, timeout_s: float) -> None:
        """Retry `true` until it succeeds; after `timeout_s` raise the last failure's error."""
        deadline = time.monotonic() + timeout_s
        delay = 0.1
        while True:
            try:
                result = self.run("true", timeout_s=max(deadline - time.monotonic(), 1.0))
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
        """The node's 127.0.0.1:`remote_port` on `local_port` (0: a free one): an `ssh -N -L`
        of its own (not the shared master, whose ControlPersist would keep the port past
        `close`)."""
        if local_port and _accepts(local_port):
            raise ProviderError(f"port {local_port} of this machine is in use: pick another")
        local_port = local_port or _free_local_port()
        options = [o for o in ssh_options(self.target, self.control_dir)
                   if not o.startswith(("-oControlMaster=", "-oControlPath=", "-oControlPersist="))]
        argv = ["ssh", "-N", *options, "-oControlMaster=no", "-oControlPath=none",
                "-oExitOnForwardFailure=yes", "-L", f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}",
                self._dest()]
        errors = tempfile.TemporaryFile()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=errors)
        deadline = time.monotonic() + self.target.connect_timeout_s + 5
        while proc.poll() is None and time.monotonic() < deadline:
            if _accepts(local_port):
                return _Forward(proc, local_port, errors)
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        errors.seek(0)
        text = errors.read().decode(errors="replace").strip()
        errors.close()
        raise connect_error(self.target, classify_text(text),
                            f"forwarding port {remote_port} failed: "
                            f"{text.splitlines()[-1] if text else 'no answer in time'}")

    def close(self) -> None:
        """Stop the shared master connection now rather than after ControlPersist (best
        effort: it exits by itself when that runs out)."""
        argv = ["ssh", *ssh_options(self.target, self.control_dir), "-O", "exit", self._dest()]
        try:
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10, check=False)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> OpenSSHRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------

    def _dest(self) -> str:
        return f"{self.target.user}@{self.target.host}"

    def _argv(self, line: str) -> list[str]:
        self.control_dir.parent.mkdir(parents=True, exist_ok=True)
        ensure_private_dir(str(self.control_dir), "SSH control directory",
                           "a control_dir of your own")
        key = self.target.key_path
        if key and not os.access(os.path.expanduser(key), os.R_OK):
            raise connect_error(self.target, Failure.NO_KEY, f"cannot read {key}")
        return ["ssh", *ssh_options(self.target, self.control_dir), self._dest(), line]

    def _ssh(
        self, line: str, timeout_s: float | None, stdin: IO[bytes] | None = None
    ) -> CommandResult:
        argv = self._argv(line)
        # Output to a file, not a pipe: the ControlPersist master ssh forks keeps inherited
        # pipes open for CONTROL_PERSIST_S after we are done.
        with tempfile.TemporaryFile() as output:
            proc = subprocess.Popen(
                argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT,
            )
            client_wait = None if timeout_s is None else timeout_s + CLIENT_TIMEOUT_MARGIN_S
            try:
                code = proc.wait(timeout=client_wait)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = TIMEOUT_EXIT_CODE
            output.seek(0)
            text = output.read().decode(errors="replace")
        failure = client_failure(code, text)
        if failure is not None:
            raise connect_error(self.target, failure, text.strip().splitlines()[-1])
        if timeout_s is not None and code in (TIMEOUT_EXIT_CODE, 128 + 9):
            text += timeout_note(timeout_s)
        return CommandResult(code, text)

    def _rsync(self, source: Path, remote: str) -> None:
        parent = posixpath.dirname(remote.rstrip("/"))
        if parent:
            self._check_copy(self.run(f"mkdir -p {shlex.quote(parent)}"), source, remote)
        ssh = shlex.join(["ssh", *ssh_options(self.target, self.control_dir)])
        src = f"{source}/" if source.is_dir() else str(source)  # trailing /: merge contents
        result = subprocess.run(
            ["rsync", "-a", "-e", ssh, src, f"{self._dest()}:{remote}"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
        )
        self._check_copy(CommandResult(result.returncode, result.stdout + result.stderr),
                         source, remote)

    def _tar_copy(self, source: Path, remote: str) -> None:
        """Pack locally, unpack remotely: one ssh call, no remote helper beyond tar."""
        if source.is_dir():
            into, arcname = remote, "."
        else:
            into, arcname = posixpath.dirname(remote) or ".", posixpath.basename(remote)
        with tempfile.TemporaryFile() as stream:
            with tarfile.open(fileobj=stream, mode="w") as archive:
                archive.add(source, arcname=arcname)
            stream.seek(0)
            quoted = shlex.quote(into)
            line = remote_command(f"mkdir -p {quoted} && tar -xf - -C {quoted}")
            result = self._ssh(line, None, stdin=stream)
        self._check_copy(result, source, remote)

    def _check_copy(self, result: CommandResult, source: Path, remote: str) -> None:
        if result.exit_code != 0:
            raise ProviderError(
                f"copying {source} to {self.target.where}:{remote} failed "
                f"(exit {result.exit_code}): {result.output.strip()[-500:]}; check the remote "
                f"path is writable by {self.target.user!r}"
            )

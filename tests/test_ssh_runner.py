"""The SSH runners against a real SSH server on loopback (asyncssh in-process, see ssh_server.py),
each test run with both clients: asyncssh, and the OpenSSH client when `ssh` is installed."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest
from polling import wait_for
from ssh_server import SSHServer, closed_port, ssh_server

from providers.base import AuthError, ConfigError, ProviderError, TransientError
from providers.ssh import AsyncSSHRunner, OpenSSHRunner, SSHRunner, choose_client, runner_for
from providers.ssh.openssh_runner import ssh_options
from providers.ssh.target import TIMEOUT_EXIT_CODE, SSHTarget, remote_command

MakeRunner = Callable[..., SSHRunner]

CLIENTS = [
    "asyncssh",
    pytest.param(
        "openssh", marks=pytest.mark.skipif(not shutil.which("ssh"), reason="no ssh client")
    ),
]

# A ProxyCommand: relays stdin/stdout to host:port, as `nc %h %p` would.
RELAY = """
import socket, sys, threading
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def up():
    while data := sys.stdin.buffer.read1(65536):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while data := sock.recv(65536):
    sys.stdout.buffer.write(data); sys.stdout.buffer.flush()
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    with ssh_server(tmp_path_factory.mktemp("sshd")) as running:
        yield running


@pytest.fixture
def control_dir() -> Iterator[Path]:
    # Not tmp_path: a control socket path must stay under ~100 bytes.
    path = Path(tempfile.mkdtemp(prefix="rc-ssh-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=CLIENTS)
def make_runner(
    request: pytest.FixtureRequest, server: SSHServer, control_dir: Path
) -> Iterator[MakeRunner]:
    """make(auth=None, port=None) -> a runner of this test's client; all closed at the end."""
    made: list[SSHRunner] = []

    def make(auth: dict[str, str] | None = None, port: int | None = None) -> SSHRunner:
        runner = runner_for(
            server.host, auth or server.auth(), port=port or server.port,
            client=request.param, control_dir=control_dir,
        )
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.close()


def test_run_returns_exit_code_and_both_output_streams_in_the_home(
    make_runner: MakeRunner, server: SSHServer
) -> None:
    runner = make_runner()
    result = runner.run("echo out; echo err >&2; pwd; exit 3")
    assert result.exit_code == 3
    # stdout and stderr are separate SSH streams: their relative order is not kept.
    assert sorted(result.output.splitlines()) == sorted(["out", "err", str(server.home)])
    assert runner.run("true").exit_code == 0


def test_env_values_arrive_literally(make_runner: MakeRunner) -> None:
    runner = make_runner()
    tricky = "a b 'c' \"d\" $HOME `id` ; rm -rf /"
    result = runner.run('printf "%s|%s" "$TRICKY" "$RAYCTL_NODE_TYPE"',
                        env={"TRICKY": tricky, "RAYCTL_NODE_TYPE": "cpu"})
    assert (result.exit_code, result.output) == (0, f"{tricky}|cpu")


def test_a_token_travels_as_a_file_never_on_a_command_line(
    make_runner: MakeRunner, server: SSHServer, tmp_path: Path
) -> None:
    runner = make_runner()
    token = "tok-5f2e9c0d1b"
    (tmp_path / "token").write_text(token)
    runner.put_file(str(tmp_path / "token"), "~/.rayctl/token")
    result = runner.run('cat "$RAYCTL_TOKEN_FILE"', env={"RAYCTL_TOKEN_FILE": ".rayctl/token"})
    assert result.output == token
    assert not [c for c in server.commands if token in c]
    with pytest.raises(ConfigError, match="RAYCTL_TOKEN.*put_file"):
        runner.run("true", env={"RAYCTL_TOKEN": token})


def test_timeout_stops_the_remote_command_and_keeps_its_output(
    make_runner: MakeRunner, server: SSHServer
) -> None:
    runner = make_runner()
    started = time.monotonic()
    result = runner.run("echo $$ > sleeper.pid; echo begun; sleep 30", timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert result.exit_code == TIMEOUT_EXIT_CODE
    assert result.output.startswith("begun\n") and "timed out after 0.5 s" in result.output
    pid = int((server.home / "sleeper.pid").read_text())
    wait_for(lambda: not _alive(pid), 5, "the timed-out command to be killed on the node")


def test_put_file_copies_a_file_creating_parents(
    make_runner: MakeRunner, server: SSHServer, tmp_path: Path
) -> None:
    runner = make_runner()
    source = tmp_path / "cluster.yaml"
    source.write_text("cluster_name: x\n")
    runner.put_file(str(source), "~/put-file/deep/er/cluster.yaml")
    assert (server.home / "put-file/deep/er/cluster.yaml").read_text() == "cluster_name: x\n"
    source.write_text("cluster_name: y\n")  # a second copy overwrites
    runner.put_file(str(source), "put-file/deep/er/cluster.yaml")
    assert runner.run("cat put-file/deep/er/cluster.yaml").output == "cluster_name: y\n"


def test_put_file_merges_a_directory_recursively_keeping_modes(
    make_runner: MakeRunner, server: SSHServer, tmp_path: Path
) -> None:
    runner = make_runner()
    source = tmp_path / "app"
    (source / "lib" / "pkg").mkdir(parents=True)
    (source / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (source / "run.sh").chmod(0o755)
    (source / "lib" / "pkg" / "mod.py").write_text("X = 1\n")
    remote = f"{tmp_path.name}/app"  # the home is shared by the tests of this module
    target = server.home / remote
    target.mkdir(parents=True)
    (target / "kept.txt").write_text("already there")
    runner.put_file(str(source), f"~/{remote}")
    assert (target / "lib" / "pkg" / "mod.py").read_text() == "X = 1\n"
    assert (target / "kept.txt").read_text() == "already there"
    assert runner.run(f"{remote}/run.sh").output == "ran\n"


def test_put_file_of_a_missing_source_names_it(make_runner: MakeRunner, tmp_path: Path) -> None:
    runner = make_runner()
    with pytest.raises(ConfigError, match="nope.txt"):
        runner.put_file(str(tmp_path / "nope.txt"), "x")


def test_wait_ready_returns_once_the_host_answers(make_runner: MakeRunner) -> None:
    runner = make_runner()
    started = time.monotonic()
    runner.wait_ready(timeout_s=10)
    assert time.monotonic() - started < 5


def test_wait_ready_retries_until_the_host_answers(
    make_runner: MakeRunner, server: SSHServer, tmp_path: Path
) -> None:
    port = closed_port()
    runner = make_runner(port=port)
    with ExitStack() as late_server:
        # The node's sshd comes up only after wait_ready has started knocking.
        boot = threading.Timer(0.3, lambda: late_server.enter_context(
            ssh_server(tmp_path, port=port, key=server.key_path)))
        boot.start()
        try:
            runner.wait_ready(timeout_s=10)
        finally:
            boot.join()
        assert runner.run("echo up").output == "up\n"
        runner.close()  # before its server goes


def test_wait_ready_on_a_closed_port_names_host_user_key_and_the_fix(
    make_runner: MakeRunner, server: SSHServer
) -> None:
    port = closed_port()
    runner = make_runner(port=port)
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        runner.wait_ready(timeout_s=1.0)
    assert time.monotonic() - started < 4
    message = str(caught.value)
    assert f"rayctl@127.0.0.1:{port}" in message and "user 'rayctl'" in message
    assert str(server.key_path) in message
    assert "refused" in message.lower() and "Fix:" in message and "within 1 s" in message


def test_wait_ready_with_a_key_the_host_refuses_is_an_auth_error(
    make_runner: MakeRunner, server: SSHServer
) -> None:
    auth = {"ssh_user": server.user, "ssh_private_key": str(server.wrong_key_path)}
    runner = make_runner(auth=auth)
    with pytest.raises(AuthError) as caught:
        runner.wait_ready(timeout_s=1.0)
    message = str(caught.value)
    assert str(server.wrong_key_path) in message and f"127.0.0.1:{server.port}" in message
    assert "authorized_keys" in message
    with pytest.raises(AuthError, match="wrong_ed25519"):
        runner.run("true")  # run raises too: the command never ran


def test_a_missing_key_file_is_reported_before_connecting(
    make_runner: MakeRunner, server: SSHServer, tmp_path: Path
) -> None:
    runner = make_runner(auth={"ssh_user": "rayctl", "ssh_private_key": str(tmp_path / "k")})
    with pytest.raises(AuthError, match="cannot read .*/k.*chmod 600"):
        runner.run("true")


def test_proxy_command_carries_the_connection(
    make_runner: MakeRunner, server: SSHServer, tmp_path: Path
) -> None:
    relay = tmp_path / "relay.py"
    relay.write_text(RELAY)
    auth = {**server.auth(), "ssh_proxy_command": f"{sys.executable} {relay} %h %p"}
    # The proxy is told the real port; the runner's own port would be ignored by a proxy.
    runner = make_runner(auth=auth)
    assert runner.run("echo via proxy").output == "via proxy\n"


@pytest.mark.skipif(not shutil.which("ssh"), reason="no ssh client")
def test_openssh_reuses_one_master_connection(server: SSHServer, control_dir: Path) -> None:
    runner = runner_for(server.host, server.auth(), port=server.port, client="openssh",
                        control_dir=control_dir)
    try:
        assert runner.run("true").exit_code == 0
        sockets = list(control_dir.iterdir())
        assert len(sockets) == 1  # the master's socket: later commands multiplex over it
        started = time.monotonic()
        for _ in range(5):
            assert runner.run("true").exit_code == 0
        assert time.monotonic() - started < 3
    finally:
        runner.close()
    wait_for(lambda: not list(control_dir.iterdir()), 5, "the master to exit")


def test_asyncssh_reuses_one_connection(server: SSHServer) -> None:
    runner = runner_for(server.host, server.auth(), port=server.port, client="asyncssh")
    try:
        before = server.connections
        for _ in range(5):
            assert runner.run("true").exit_code == 0
        runner.put_file(__file__, "reuse-check.py")
        assert server.connections == before + 1
    finally:
        runner.close()


# --- pure parts ---------------------------------------------------------------------------


def test_openssh_options_are_rays() -> None:
    target = SSHTarget("10.0.0.5", "ubuntu", "~/.ssh/k.pem", 2222, "nc -x p:1080 %h %p", 7)
    args = ssh_options(target, Path("/tmp/cm"))
    for option in ("BatchMode=yes", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null",
                   "ServerAliveInterval=5", "ConnectTimeout=7s", "IdentitiesOnly=yes",
                   "ControlMaster=auto", "ControlPath=/tmp/cm/%C", "ControlPersist=10s",
                   "ProxyCommand=nc -x p:1080 %h %p"):
        assert f"-o{option}" in args
    assert args[-4:] == ["-i", os.path.expanduser("~/.ssh/k.pem"), "-p", "2222"]


def test_remote_command_quotes_and_wraps_in_timeout() -> None:
    line = remote_command("echo $A", {"A": "x y"}, timeout_s=3)
    assert line == "timeout --kill-after=2 3 bash --login -c 'export A='\"'\"'x y'\"'\"'; echo $A'"
    with pytest.raises(ConfigError, match="not a valid shell name"):
        remote_command("true", {"A-B": "1"})


def test_runner_for_picks_the_client_and_reads_host_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = runner_for("10.0.0.9:2201", {"ssh_user": "me"}, client="asyncssh")
    assert isinstance(runner, AsyncSSHRunner)
    assert (runner.target.host, runner.target.port, runner.target.user) == ("10.0.0.9", 2201, "me")
    monkeypatch.setenv("RAYCTL_SSH_CLIENT", "openssh")
    assert isinstance(runner_for("h", None), OpenSSHRunner)
    monkeypatch.setenv("RAYCTL_SSH_CLIENT", "putty")
    with pytest.raises(ProviderError, match="putty"):
        choose_client()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_forward_port_reaches_a_port_of_the_host_until_closed(
    request: pytest.FixtureRequest, tmp_path: Path, control_dir: Path
) -> None:
    """What `rayctl job CONFIG` rides on: the node's 127.0.0.1 port on a local one, both clients."""
    import socket
    import socketserver

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(b"echo:" + self.request.recv(100))

    with ExitStack() as stack:
        sshd = stack.enter_context(ssh_server(tmp_path / "fwd", forwarding=True))
        echo = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
        stack.callback(echo.server_close)
        threading.Thread(target=echo.serve_forever, daemon=True).start()
        stack.callback(echo.shutdown)
        clients = ["asyncssh"] + (["openssh"] if shutil.which("ssh") else [])
        for client in clients:
            runner = runner_for(sshd.host, sshd.auth(), port=sshd.port, client=client,
                                control_dir=control_dir)
            stack.callback(runner.close)
            forward = runner.forward_port(echo.server_address[1])
            with socket.create_connection(("127.0.0.1", forward.local_port), timeout=5) as s:
                s.sendall(b"hi")
                assert s.recv(100) == b"echo:hi", client
            forward.close()
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", forward.local_port), timeout=2).close()

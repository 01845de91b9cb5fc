"""The launcher's interactive commands against a head reached over SSH, as a user runs them:
`rayctl attach` and `rayctl monitor` on a pseudo-terminal, `exec --tmux` / `--screen`, and
`exec --port-forward`. The head is a head-only on-prem cluster on an in-process asyncssh server
(with real terminals and `ssh -L` forwarding) `up`-ed once per module; the interactive commands
run as `rayctl` subprocesses through the OpenSSH client, as they would from a user's shell.

As in tests/test_onprem_end_to_end.py, installing rayctl on the host is stubbed (the host is this
machine and this venv): the wheel `up` builds and the host's `pip install` of it. The real wheel
is built and installed in tests/test_launcher_wheel.py.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
import yaml
from launcher_stubs import fake_wheel, install_python_shim, invoke
from polling import wait_for
from ssh_server import SSHServer, closed_port, ssh_server

from autoscaler.launcher import ship as launcher_ship
from autoscaler.launcher.head import load_record

NAME = "sessions"
RAYCTL = str(Path(sys.executable).parent / "rayctl")
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07)")  # CSI and title sequences
PROMPT = "head-shell$ "  # the host's ~/.profile sets it: the shell is ready when it shows


@dataclass
class Head:
    root: Path
    config_file: Path
    server: SSHServer
    env: dict[str, str]  # for `rayctl` subprocesses: this client's HOME and TMPDIR
    tmux_env: dict[str, str]  # reaches the host's private tmux server

    def session_dir(self) -> Path:
        return next((self.root / "head-tmp").glob("session_*"))




def processes_under(root: Path) -> list[psutil.Process]:
    """Live processes this module started anywhere (host services, ssh, tmux, http servers):
    each has a HOME, TMPDIR, RAYCTL_TEMP_DIR or TMUX_TMPDIR under `root`."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and any(
                str(root) in value for value in proc.environ().values()
            ) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def host_profile(head_tmp: Path, tmux_dir: Path, shim: Path) -> str:
    """What a user's ~/.profile on the host says (the runners and `attach` use login shells)."""
    path = f"{shim}:{Path(sys.executable).parent}:$PATH"
    return (f"export PATH={path}\nexport RAYCTL_TEMP_DIR={head_tmp}\n"
            f"export TMUX_TMPDIR={tmux_dir}\nexport PS1='{PROMPT}'\n")


def cluster_yaml(server: SSHServer, state_dir: Path) -> str:
    return yaml.safe_dump({
        "cluster_name": NAME,
        "max_workers": 0,
        "provider": {
            "type": "onprem",
            "head_ip": f"127.0.0.1:{server.port}",
            "worker_ips": [],
            "ssh_client": "asyncssh",  # `up` and `exec` leave no OpenSSH master behind
            "state_dir": str(state_dir),
            "stop_timeout_s": 30,
        },
        "auth": server.auth(),
        "head_node_type": "head",
        "available_node_types": {"head": {"resources": {"CPU": 0}}},
    })


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    """A head-only on-prem cluster, up. At exit: `down`, then every process started under the
    module's root is killed (tmux and ssh included), and the root is removed."""
    if shutil.which("ssh") is None:
        pytest.skip("the interactive commands need the OpenSSH client `ssh` (apt openssh-client)")
    # Short: unix socket paths (tmux's, any ssh control socket) must stay under ~100 bytes.
    root = Path(tempfile.mkdtemp(prefix="rls-", dir="/tmp"))
    tmux_dir = root / "tmux"
    shim = root / "shim"
    for folder in (tmux_dir, shim, root / "tmp", root / "client-home"):
        folder.mkdir()
    install_python_shim(shim)
    env = {**os.environ, "HOME": str(root / "client-home"), "TMPDIR": str(root / "tmp")}
    for name in ("RAYCTL_ADDRESS", "RAYCTL_TOKEN_FILE", "RAYCTL_HEAD_ADDRESS", "RAYCTL_TEMP_DIR",
                 "TMUX", "TMUX_TMPDIR"):
        env.pop(name, None)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        stack.callback(_kill_all, root)
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        # `up`, `exec` and `down` run in this process: the same client HOME as the subprocesses.
        for name in ("HOME", "TMPDIR"):
            patch.setenv(name, env[name])
        for name in set(os.environ) - set(env):
            patch.delenv(name)
        server = stack.enter_context(ssh_server(root / "host", terminals=True, forwarding=True))
        (server.home / ".profile").write_text(host_profile(root / "head-tmp", tmux_dir, shim))
        config_file = root / "cluster.yaml"
        config_file.write_text(cluster_yaml(server, root / "state"))
        stack.callback(invoke, "down", str(config_file), "-y")
        with pytest.MonkeyPatch.context() as during_up:  # only here: the wheel tests build one
            during_up.setattr(launcher_ship, "build_wheel", fake_wheel)
            up = invoke("up", str(config_file), "-y")
        assert up.exit_code == 0, up.output
        yield Head(root, config_file, server, env, {**env, "TMUX_TMPDIR": str(tmux_dir)})


def _kill_all(root: Path) -> None:
    procs = processes_under(root)
    for proc in procs:
        with suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(procs, timeout=10)


# --- a rayctl command on a pseudo-terminal ----------------------------------------------------


@dataclass
class Terminal:
    """`rayctl ARGS` with a pseudo-terminal as its stdin/stdout/stderr, in its own session."""

    process: subprocess.Popen[bytes]
    fd: int
    output: bytearray = field(default_factory=bytearray)

    def text(self) -> str:
        """The output as lines a person reads: no terminal escapes, line ends as \\n."""
        plain = _ESCAPES.sub("", self.output.decode(errors="replace"))
        return plain.replace("\r\n", "\n").replace("\r", "\n")

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def read_until(self, pattern: str, timeout_s: float = 20) -> re.Match[str]:
        """Read until `pattern` (a multiline regex) matches the output so far, or fail."""
        deadline = time.monotonic() + timeout_s
        while not (found := re.search(pattern, self.text(), re.MULTILINE)):
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"no {pattern!r} within {timeout_s} s in:\n{self.text()}")
        return found

    def wait(self, timeout_s: float = 20) -> int:
        self.exits_within(timeout_s)
        return self.process.wait(0.01)

    def exits_within(self, timeout_s: float) -> bool:
        """Read the output until the command exits; False if it is still running at the end."""
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        return self.process.poll() is not None

    def _read(self, timeout_s: float) -> bool:
        """Append what arrives within `timeout_s`; False once the terminal is closed."""
        ready, _, _ = select.select([self.fd], [], [], min(timeout_s, 0.5))
        if ready:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # EIO: the command and everything it started are gone
                return False
            self.output += data
            return bool(data)
        return True


Start = Callable[..., Terminal]


@pytest.fixture
def rayctl_on_terminal(head: Head) -> Iterator[Start]:
    """`start(*args)` runs `rayctl ARGS` on a new pseudo-terminal. At exit every such command's
    process group is killed and its terminal closed."""
    opened: list[Terminal] = []

    def start(*args: str) -> Terminal:
        controller, child = os.openpty()
        # A size and a terminal type, as a terminal window has (ssh hands both to the head).
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        try:
            process = subprocess.Popen(
                [RAYCTL, *args], stdin=child, stdout=child, stderr=child,
                env={**head.env, "TERM": "xterm"}, cwd=head.root, start_new_session=True,
            )
        finally:
            os.close(child)
        opened.append(Terminal(process, controller))
        return opened[-1]

    try:
        yield start
    finally:
        for term in opened:
            if term.process.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(term.process.pid, signal.SIGKILL)
                term.process.wait(10)
            os.close(term.fd)


# --- attach ----------------------------------------------------------------------------------


def test_attach_gives_a_shell_on_the_head(head: Head, rayctl_on_terminal: Start) -> None:
    term = rayctl_on_terminal("attach", str(head.config_file))
    term.read_until(re.escape(PROMPT))
    term.send("echo $((6*7)); exit\r")  # Enter sends CR, as a keyboard does
    term.read_until(r"^42$")
    assert term.wait() == 0, term.text()


def test_attach_shell_is_in_the_home_with_the_cluster_address(
    head: Head, rayctl_on_terminal: Start
) -> None:
    term = rayctl_on_terminal("attach", str(head.config_file))
    term.read_until(re.escape(PROMPT))
    term.send('pwd; echo "address=$RAYCTL_ADDRESS"; exit\r')
    term.read_until(r"^address=\S+$")
    assert term.wait() == 0, term.text()
    record = load_record(NAME)
    assert record is not None
    assert re.search(rf"^{re.escape(str(head.server.home))}$", term.text(), re.MULTILINE)
    assert f"address={record.address}" in term.text()


def test_attach_returns_the_shells_exit_code(head: Head, rayctl_on_terminal: Start) -> None:
    term = rayctl_on_terminal("attach", str(head.config_file))
    term.read_until(re.escape(PROMPT))
    term.send("exit 3\r")
    assert term.wait() == 3, term.text()


def test_attach_to_a_cluster_that_is_not_up_is_a_one_line_error(
    head: Head, tmp_path: Path
) -> None:
    other = yaml.safe_load(head.config_file.read_text())
    other["cluster_name"] = "never-up"
    config = tmp_path / "never-up.yaml"
    config.write_text(yaml.safe_dump(other))
    for command in ("attach", "monitor"):
        result = invoke(command, str(config))
        assert result.exit_code == 1, result.output
        assert result.output.count("\n") == 1 and "Traceback" not in result.output
        assert "'never-up' has no head node" in result.output
        assert "rayctl up" in result.output


# --- exec --tmux / --screen ------------------------------------------------------------------


def tmux(head: Head, *args: str) -> subprocess.CompletedProcess[str]:
    """The host's tmux server (its private socket under the module's TMUX_TMPDIR)."""
    return subprocess.run(["tmux", *args], env=head.tmux_env, capture_output=True, text=True,
                          timeout=10)


@pytest.fixture
def tmux_server(head: Head) -> Iterator[None]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    try:
        yield
    finally:
        tmux(head, "kill-server")


@pytest.mark.usefixtures("tmux_server")
def test_exec_tmux_runs_the_command_in_a_detached_session_on_the_head(head: Head) -> None:
    ran = invoke("exec", str(head.config_file), 'echo "ran in $TMUX_PANE" > tmux-ran.txt', "--tmux")
    assert ran.exit_code == 0, ran.output
    name = re.search(r"started tmux session (\S+) on the head", ran.output)
    assert name, ran.output
    assert tmux(head, "has-session", "-t", name[1]).returncode == 0
    made = head.server.home / "tmux-ran.txt"
    wait_for(lambda: made.is_file() and made.read_text().strip(), 10, "the command's file")
    assert made.read_text().startswith("ran in %")  # inside a tmux pane
    # A second one at once is a second session, not a name clash.
    again = invoke("exec", str(head.config_file), "true", "--tmux")
    assert again.exit_code == 0, again.output
    sessions = tmux(head, "list-sessions", "-F", "#{session_name}").stdout.split()
    assert len(sessions) == 2 and name[1] in sessions


@pytest.mark.usefixtures("tmux_server")
def test_attach_tmux_shows_the_session_exec_tmux_started(
    head: Head, rayctl_on_terminal: Start
) -> None:
    ran = invoke("exec", str(head.config_file), "echo from-the-exec-$((6*7))", "--tmux")
    assert ran.exit_code == 0, ran.output
    term = rayctl_on_terminal("attach", str(head.config_file), "--tmux")
    term.read_until("from-the-exec-42")  # the session's screen, drawn by tmux
    # Ctrl-b d: detach; the session stays. A tmux client still reading the terminal's answers
    # to its start-up queries can swallow the keys, so press them again, as a person would.
    deadline = time.monotonic() + 20
    while term.process.poll() is None and time.monotonic() < deadline:
        term.send("\x02d")
        term.exits_within(2)
    assert term.wait() == 0, term.text()
    assert len(tmux(head, "list-sessions").stdout.splitlines()) == 1


@pytest.mark.skipif(shutil.which("screen") is not None, reason="screen is installed here")
def test_exec_screen_without_screen_on_the_head_says_so(head: Head) -> None:
    ran = invoke("exec", str(head.config_file), "touch screen-ran.txt", "--screen")
    assert ran.exit_code == 127, ran.output
    assert "screen is not installed on the head" in ran.output
    assert not (head.server.home / "screen-ran.txt").exists()


# --- exec --port-forward ---------------------------------------------------------------------


def http_get(port: int) -> str | None:
    """The body at http://127.0.0.1:PORT/, or None while nothing answers there yet."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/")
        return connection.getresponse().read().decode()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def test_exec_port_forward_reaches_a_head_port_while_the_command_runs(
    head: Head, rayctl_on_terminal: Start
) -> None:
    local = closed_port()
    remote = wait_for(lambda: (port := closed_port()) != local and port, 5, "a second port")
    serve = (f"mkdir -p www && echo served-by-the-head > www/index.html && "
             f"exec python3 -m http.server {remote} --bind 127.0.0.1 --directory www")
    term = rayctl_on_terminal("exec", str(head.config_file), serve,
                              "--port-forward", f"{local}:{remote}")
    body = wait_for(lambda: http_get(local), 20, f"the head's port {remote} on local {local}")
    assert body.strip() == "served-by-the-head"
    term.send("\x03")  # Ctrl-C reaches the command on the head, which stops
    assert term.wait() == 0, term.text()  # http.server exits 0 on Ctrl-C
    assert http_get(local) is None  # the forward ended with the command


def test_exec_port_forward_rejects_a_bad_port(head: Head) -> None:
    ran = invoke("exec", str(head.config_file), "true", "--port-forward", "80:http")
    assert ran.exit_code == 2
    assert "LOCAL:REMOTE" in ran.output and "Traceback" not in ran.output


# --- the web service through a forwarded port -------------------------------------------------


def test_job_and_list_reach_a_remote_heads_web_service_through_ssh(head: Head) -> None:
    """`rayctl job submit CONFIG` and `rayctl list --cluster-config CONFIG` from a machine that
    is not the head: the head's web service listens on its own 127.0.0.1 only, so the CLI forwards
    its port over the launcher's SSH runner for the command's length."""
    config = str(head.config_file)
    submitted = invoke("job", "submit", config, "--", "echo ran-on-the-head")
    assert submitted.exit_code == 0, submitted.output
    assert "ran-on-the-head" in submitted.output and "succeeded" in submitted.output
    listed = invoke("list", "nodes", "--cluster-config", config, "--json")
    assert listed.exit_code == 0, listed.output
    assert '"is_head_node": true' in listed.output
    web = json.loads((head.session_dir() / "web.json").read_text())
    assert head.server.forwarded.count(urlsplit(web["url"]).port) >= 2  # both through the tunnel
    # the token came from the head over SSH (on a laptop the head's path does not exist)
    assert sum("--rayctl-token-file--" in c for c in head.server.commands) >= 2


def test_dashboard_forwards_a_remote_heads_page_until_ctrl_c(head: Head) -> None:
    """`rayctl dashboard CONFIG` as Ray's `ray dashboard`: the page on this machine through the
    forwarded port, a one-time link to log in, the forward gone after Ctrl-C (SIGINT)."""
    local = closed_port()
    process = subprocess.Popen([RAYCTL, "dashboard", str(head.config_file), "--port", str(local)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=head.env, cwd=head.root, start_new_session=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        assert "forwarded here until Ctrl-C" in lines[2], lines
        link = lines[1].split("log in once with ")[1].split()[0]
        assert link.startswith(f"http://127.0.0.1:{local}/login?code=")
        connection = http.client.HTTPConnection("127.0.0.1", local, timeout=10)
        try:
            connection.request("GET", link.removeprefix(f"http://127.0.0.1:{local}"))
            logged_in = connection.getresponse()
            logged_in.read()
            cookie = (logged_in.getheader("Set-Cookie") or "").split(";")[0]
            assert logged_in.status == 303 and cookie.startswith("rayctl_session=")
            connection.request("GET", "/", headers={"Cookie": cookie})
            page = connection.getresponse()
            assert page.status == 200 and "/static/dashboard.js" in page.read().decode()
        finally:
            connection.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
        assert http_get(local) is None  # the forward ended with the command
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- monitor ---------------------------------------------------------------------------------


def test_monitor_follows_the_autoscaler_log_until_ctrl_c(
    head: Head, rayctl_on_terminal: Start
) -> None:
    term = rayctl_on_terminal("monitor", str(head.config_file), "--lines", "100000")
    term.read_until("autoscaler monitor started")
    # Following, not a one-off dump: a line added now shows up too.
    with open(head.session_dir() / "logs" / "monitor.log", "a") as log:
        log.write("a line written after monitor started\n")
    term.read_until("^a line written after monitor started$")
    term.send("\x03")
    assert term.wait() == 130, term.text()

"""The launcher's commands on a running head: exec, submit, rsync-up / rsync-down, get-head-ip,
status, and the interactive ones (attach, monitor, exec --port-forward) that hand the terminal
to a shell on the head. Commands go through the head's runner, so a local slot and an SSH host
are handled alike; only the interactive ones need to know which one it is.
"""

from __future__ import annotations

import base64
import io
import os
import secrets
import shlex
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoscaler.config import ClusterConfig
from autoscaler.launcher.head import (
    EnvRunner,
    HeadServices,
    LaunchError,
    cluster_env,
    cluster_instances,
    head_ip,
    head_runner,
    is_local,
    open_provider,
    read_head_services,
    require_head,
)
from providers.base import CommandResult, Instance, NodeProvider, ProviderError

JOBS_DIR = "rayctl_jobs"  # on the head, relative to the login (or slot) directory


@dataclass(frozen=True, slots=True)
class Head:
    config: ClusterConfig
    provider: NodeProvider
    instance: Instance
    runner: EnvRunner


@dataclass(frozen=True, slots=True)
class PortForward:
    """`--port-forward`: the head's `remote` port reachable on this machine's `local` one."""

    local: int
    remote: int


@dataclass(frozen=True, slots=True)
class Interactive:
    """A foreground process that talks to the head: argv, and for a local slot its cwd/env."""

    argv: list[str]
    cwd: str | None = None
    env: dict[str, str] | None = None


def open_head(config: ClusterConfig) -> Head:
    provider = open_provider(config)
    if not is_local(config):
        try:
            provider.bootstrap()  # idempotent; a cloud provider resolves the SSH key here
        except ProviderError as exc:
            raise LaunchError(f"provider bootstrap failed: {exc}") from exc
    instance = require_head(config, provider)
    return Head(config, provider, instance, head_runner(config, provider, instance))


def head_services(head: Head) -> HeadServices:
    services = read_head_services(head.runner)
    if services is None:
        raise LaunchError(
            f"head {head.instance.id} runs no cluster services: start them with "
            "`rayctl up CONFIG --restart-only`"
        )
    return services


# --- pure helpers ------------------------------------------------------------------------------


def parse_port_forward(text: str) -> PortForward:
    """`PORT` (the same port on both ends, as Ray's) or `LOCAL:REMOTE`."""
    local, _, remote = text.partition(":")
    try:
        ports = PortForward(int(local), int(remote or local))
    except ValueError:
        ports = PortForward(0, 0)
    if not all(0 < port < 65536 for port in (ports.local, ports.remote)):
        raise ValueError(f"--port-forward {text!r}: give a port (8265) or LOCAL:REMOTE "
                         "(18265:8265), each 1-65535")
    return ports


def session_name(now: float | None = None) -> str:
    """Unique per call: two `exec --tmux` in the same second must not collide."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"rayctl-{stamp}-{secrets.token_hex(2)}"


def require_program(program: str) -> str:
    """A shell guard: stop with a clear message when `program` is missing on the head."""
    message = shlex.quote(f"error: {program} is not installed on the head: install it there "
                          f"(e.g. in setup_commands) or run without --{program}")
    return f"command -v {program} >/dev/null 2>&1 || {{ echo {message} >&2; exit 127; }}"


def wrap_in_session(command: str, multiplexer: str | None, name: str | None = None) -> str:
    """Ray's exec --tmux / --screen: run detached in a session that stays after the command,
    so the user can attach later; prints the session's name."""
    if multiplexer is None:
        return command
    keep = shlex.quote(f"{command}; exec bash")
    name = name or session_name()
    if multiplexer == "tmux":
        start = f"tmux new-session -d -s {name} bash -c {keep}"
    elif multiplexer == "screen":
        start = f"screen -dmS {name} bash -c {keep}"
    else:
        raise ValueError(f"unknown multiplexer {multiplexer!r}; tmux or screen")
    started = shlex.quote(f"started {multiplexer} session {name} on the head: "
                          f"`rayctl attach CONFIG --{multiplexer}` to see it")
    return f"{require_program(multiplexer)}; {start} && echo {started}"


def python_on_head(config: ClusterConfig) -> str:
    """A local slot runs this interpreter (rayctl's venv); a cloud node the setup's python3."""
    return sys.executable if is_local(config) else "python3"


# --- commands ---------------------------------------------------------------------------------------


def exec_on_head(
    config: ClusterConfig, command: str, *, multiplexer: str | None = None
) -> CommandResult:
    """Run a shell command on the head with the cluster's address and token in its env."""
    head = open_head(config)
    env = cluster_env(read_head_services(head.runner))
    return head.runner.run(wrap_in_session(command, multiplexer), env=env)


def submit(config: ClusterConfig, script: str, args: Sequence[str]) -> CommandResult:
    """Copy a script to the head and run it there; `rt.init()` in it joins the cluster."""
    source = Path(script).expanduser()
    if not source.is_file():
        raise LaunchError(f"no script {script}: give the path of a Python file")
    head = open_head(config)
    env = cluster_env(head_services(head))
    remote = f"{JOBS_DIR}/{source.name}"
    head.runner.put_file(str(source), remote)
    line = shlex.join([python_on_head(config), remote, *args])
    return head.runner.run(line, env=env)


def rsync_up(config: ClusterConfig, source: str, target: str) -> None:
    if not Path(source).expanduser().exists():
        raise LaunchError(f"no such local file or directory: {source}")
    open_head(config).runner.put_file(source, target)


def rsync_down(config: ClusterConfig, source: str, target: str) -> Path:
    """Copy a file or directory from the head: a tar stream through the runner (base64 on
    the way, since runner output is text), so it needs nothing but tar on the node."""
    head = open_head(config)
    parent, name = os.path.split(source.rstrip("/"))
    line = f"tar -C {shlex.quote(parent or '.')} -czf - {shlex.quote(name)} | base64 -w0"
    ran = head.runner.run(f"set -o pipefail; {line}")
    if ran.exit_code != 0:
        raise LaunchError(f"cannot read {source} on head {head.instance.id}: "
                          f"{ran.output.strip()[-300:]}")
    return _unpack(base64.b64decode(ran.output.strip()), name, Path(target).expanduser())


def _unpack(data: bytes, name: str, target: Path) -> Path:
    with tempfile.TemporaryDirectory() as scratch, tarfile.open(
        fileobj=io.BytesIO(data), mode="r:gz"
    ) as archive:
        archive.extractall(scratch, filter="data")
        fetched = Path(scratch) / name
        if fetched.is_dir():
            shutil.copytree(fetched, target, dirs_exist_ok=True)
            return target
        final = target / name if target.is_dir() else target
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(fetched, final)
        return final


def get_head_ip(config: ClusterConfig) -> str:
    return head_ip(require_head(config, open_provider(config)))


def status_on_head(config: ClusterConfig, *, as_json: bool, verbose: bool) -> CommandResult:
    """`rayctl status` run on the head, where the cluster's address file is."""
    head = open_head(config)
    services = read_head_services(head.runner)
    if services is None or "gcs" not in services.alive:
        raise LaunchError(_services_down(config, head, services))
    flags = (["--json"] if as_json else []) + (["--verbose"] if verbose else [])
    return head.runner.run(shlex.join(["rayctl", "status", *flags]), env=cluster_env(services))


def _services_down(config: ClusterConfig, head: Head, services: HeadServices | None) -> str:
    """What is left of a cluster whose head runs no (or not all) services, and what to do: an
    interrupted `down` stops the services before it terminates anything."""
    left = cluster_instances(head.provider, config.cluster_name)
    names = ", ".join(f"{i.id} (head)" if i.is_head else i.id for i in left)
    stopped = "no services" if services is None or not services.alive else (
        f"no GCS ({', '.join(services.dead) or 'gcs'} stopped)"
    )
    return (
        f"cluster {config.cluster_name!r}: head {head.instance.id} runs {stopped}, so there is "
        f"no status to show; {len(left)} instance(s) still up: {names}. "
        "`rayctl up CONFIG --restart-only` starts the services again; `rayctl down CONFIG` "
        "removes everything"
    )


# --- interactive --------------------------------------------------------------------------------


def attach(config: ClusterConfig, multiplexer: str | None = None) -> Interactive:
    """A login shell on the head (local: in the slot directory with the node's environment)."""
    head = open_head(config)
    env = cluster_env(read_head_services(head.runner))
    if multiplexer == "tmux":
        return interactive(head, f"{require_program('tmux')}; tmux attach || tmux new-session",
                           env)
    if multiplexer == "screen":
        return interactive(head, f"{require_program('screen')}; screen -rd || screen", env)
    return interactive(head, None, env)


def follow_monitor_log(config: ClusterConfig, lines: int = 100) -> Interactive:
    head = open_head(config)
    services = head_services(head)
    log = shlex.quote(f"{services.session_dir}/logs/monitor.log")
    return interactive(head, f"tail -n {lines} -F {log}", {})


def port_forward(
    config: ClusterConfig, command: str, ports: Sequence[PortForward]
) -> Interactive:
    if is_local(config):
        raise LaunchError(
            "--port-forward is not applicable to the local provider: the head's services "
            "already listen on 127.0.0.1 of this machine"
        )
    head = open_head(config)
    env = cluster_env(read_head_services(head.runner))
    return interactive(head, command, env, forwards=ports)


def interactive(
    head: Head, command: str | None, env: Mapping[str, str],
    forwards: Sequence[PortForward] = (),
) -> Interactive:
    inner = head.runner.inner
    merged = {**head.runner.env, **env}
    slot_dir = getattr(inner, "slot_dir", None)
    if slot_dir is not None and hasattr(inner, "environment"):
        argv = ["bash", "-c", command] if command else [os.environ.get("SHELL") or "bash", "-i"]
        return Interactive(argv, str(slot_dir), inner.environment(merged))
    target = getattr(inner, "target", None)
    if target is None:
        raise LaunchError(f"cannot open an interactive session on {head.instance.id}: its "
                          "runner is neither a local slot nor SSH")
    return Interactive(_ssh_argv(target, command or "exec bash -l", merged, forwards))


def _ssh_argv(target: object, command: str, env: Mapping[str, str],
              forwards: Sequence[PortForward]) -> list[str]:
    from providers.ssh.openssh_runner import default_control_dir, ssh_options
    from providers.ssh.target import SSHTarget, remote_command

    if not isinstance(target, SSHTarget) or shutil.which("ssh") is None:
        raise LaunchError("an interactive session needs the OpenSSH client (`ssh`) on PATH")
    # One long connection of its own: no connection sharing, whose master would need the
    # runner's control directory (absent on a fresh machine or with the asyncssh runner) and
    # would outlive the session, holding its forwarded ports and its terminal.
    options = [o for o in ssh_options(target, default_control_dir(target.user))
               if o != "-oBatchMode=yes" and not o.startswith(("-oControlMaster=",
                                                               "-oControlPath=",
                                                               "-oControlPersist="))]
    options += ["-oControlMaster=no", "-oControlPath=none"]
    if forwards:
        options.append("-oExitOnForwardFailure=yes")  # a port in use is an error, not a warning
    for forward in forwards:
        options += ["-L", f"{forward.local}:localhost:{forward.remote}"]
    return ["ssh", "-tt", *options, f"{target.user}@{target.host}", remote_command(command, env)]

"""The launcher's view of a running cluster: which instance is its head, what the head's
services say about themselves (read through the head's command runner, so the same code works
for a local slot and over SSH), and the record `up` keeps on this machine
(`~/.rayctl/clusters/<name>/head.json`) so later commands can say where the cluster is.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autoscaler.config import ClusterConfig
from autoscaler.config import open_provider as _open
from providers.base import (
    TAG_CLUSTER,
    CommandResult,
    CommandRunner,
    Instance,
    NodeProvider,
)

LAUNCHER_DIR_ENV = "RAYCTL_LAUNCHER_DIR"
DEFAULT_LAUNCHER_DIR = "~/.rayctl/clusters"
# Where `rayctl start --head` writes its address file on the node (the local runner sets
# RAYCTL_TEMP_DIR to the slot's tmp/; over SSH the runtime's default applies).
ADDRESS_FILE_CMD = 'cat "${RAYCTL_TEMP_DIR:-/tmp/rayctl-$(id -u)}/cluster_address.json"'


class LaunchError(Exception):
    """A launcher command cannot go on; the message says what is wrong and what to do."""


@dataclass(frozen=True, slots=True)
class HeadServices:
    """What the head's session reports: its address file and which recorded processes live."""

    address: str
    token_file: str
    session_dir: str
    alive: tuple[str, ...]
    dead: tuple[str, ...]

    @property
    def running(self) -> bool:
        return bool(self.alive) and not self.dead


@dataclass(frozen=True, slots=True)
class HeadRecord:
    """What `up` learned about the head, kept locally for `status`, `exec` and the user."""

    cluster_name: str
    instance_id: str
    head_ip: str
    address: str
    token_file: str
    session_dir: str
    provider_type: str
    launch_hash: str


# --- local files ----------------------------------------------------------------------------


def launcher_dir(cluster_name: str) -> Path:
    root = os.environ.get(LAUNCHER_DIR_ENV) or DEFAULT_LAUNCHER_DIR
    return Path(root).expanduser().absolute() / cluster_name


def save_record(record: HeadRecord) -> Path:
    path = launcher_dir(record.cluster_name) / "head.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=1))
    tmp.replace(path)
    return path


def load_record(cluster_name: str) -> HeadRecord | None:
    try:
        data = json.loads((launcher_dir(cluster_name) / "head.json").read_text())
        return HeadRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def forget_record(cluster_name: str) -> None:
    from runtime.node import forget_cluster

    (launcher_dir(cluster_name) / "head.json").unlink(missing_ok=True)
    forget_cluster(cluster_name)


# --- the provider side ----------------------------------------------------------------------


def open_provider(config: ClusterConfig) -> NodeProvider:
    return _open(config)


def cluster_instances(provider: NodeProvider, cluster_name: str) -> list[Instance]:
    """Every live instance tagged with this cluster (providers list only their cluster, but a
    shared account may hold look-alikes: the tag decides)."""
    return [i for i in provider.list_instances() if i.tags.get(TAG_CLUSTER) == cluster_name]


def find_head(instances: list[Instance]) -> Instance | None:
    """The head is the instance tagged head; with several (an interrupted replacement), the
    newest one is the head and the others are leftovers `down` removes."""
    heads = sorted((i for i in instances if i.is_head), key=lambda i: i.launched_at)
    return heads[-1] if heads else None


def require_head(config: ClusterConfig, provider: NodeProvider) -> Instance:
    head = find_head(cluster_instances(provider, config.cluster_name))
    if head is None:
        raise LaunchError(
            f"cluster {config.cluster_name!r} has no head node: start it with "
            "`rayctl up CONFIG` (or pass --start)"
        )
    return head


def head_ip(instance: Instance) -> str:
    return instance.external_ip or instance.internal_ip


def is_local(config: ClusterConfig) -> bool:
    return config.provider_type == "local"


def node_extra_env(config: ClusterConfig) -> dict[str, str]:
    """What every command on a local node needs beyond the runner's own environment: this
    interpreter's bin directory first on PATH, so `rayctl` in a start command is the one
    running now even when its venv is not activated."""
    if not is_local(config):
        return {}
    bin_dir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    return {"PATH": bin_dir if not path else f"{bin_dir}{os.pathsep}{path}"}


class EnvRunner:
    """A runner that adds environment variables to every command of another runner."""

    def __init__(self, runner: CommandRunner, env: Mapping[str, str]) -> None:
        self.inner, self.env = runner, dict(env)

    @property
    def on_this_machine(self) -> bool:
        return self.inner.on_this_machine

    def run(
        self,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> CommandResult:
        return self.inner.run(command, env={**self.env, **(env or {})}, timeout_s=timeout_s)

    def put_file(self, local_path: str, remote_path: str) -> None:
        self.inner.put_file(local_path, remote_path)

    def wait_ready(self, timeout_s: float) -> None:
        self.inner.wait_ready(timeout_s)


def head_runner(config: ClusterConfig, provider: NodeProvider, head: Instance) -> EnvRunner:
    return EnvRunner(provider.command_runner(head), node_extra_env(config))


# --- what the head says about itself --------------------------------------------------------


def pid_check_command(session_dir: str) -> str:
    """One line per pid file of a service: `up NAME` or `down NAME`. Workers' pid files are
    left out: workers come and go (an actor killed, a job's supervisor done) and a dead one says
    nothing about the head's health. Plain shell, so it works on a node where rayctl is not (yet)
    installed."""
    pids = shlex.quote(f"{session_dir}/pids")
    return (
        f"cd {pids} 2>/dev/null && for f in *.pid; do [ -e \"$f\" ] || continue; "
        "case \"$f\" in worker-*) continue;; esac; "
        "p=$(sed -e 's/^{\"pid\": *//' -e 's/[,}].*//' \"$f\"); "
        "if kill -0 \"$p\" 2>/dev/null; then echo \"up ${f%.pid}\"; "
        "else echo \"down ${f%.pid}\"; fi; done; true"
    )


def read_head_services(runner: CommandRunner) -> HeadServices | None:
    """The head's address file and process liveness, or None when no head session exists."""
    found = runner.run(ADDRESS_FILE_CMD, timeout_s=30)
    if found.exit_code != 0:
        return None
    try:
        info: dict[str, Any] = json.loads(found.output.strip().splitlines()[-1])
        address, token_file, session_dir = (
            str(info["address"]), str(info["token_file"]), str(info["session_dir"])
        )
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    checked = runner.run(pid_check_command(session_dir), timeout_s=30)
    alive, dead = parse_pid_check(checked.output)
    return HeadServices(address, token_file, session_dir, alive, dead)


def parse_pid_check(output: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    alive: list[str] = []
    dead: list[str] = []
    for line in output.splitlines():
        state, _, name = line.strip().partition(" ")
        if state == "up" and name:
            alive.append(name)
        elif state == "down" and name:
            dead.append(name)
    return tuple(alive), tuple(dead)


def cluster_env(services: HeadServices | None) -> dict[str, str]:
    """The environment a command on the head needs to reach its cluster explicitly."""
    if services is None:
        return {}
    return {"RAYCTL_ADDRESS": services.address, "RAYCTL_TOKEN_FILE": services.token_file}

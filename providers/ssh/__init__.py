"""SSH command runners for cloud and on-prem nodes, and `runner_for`, which picks one.

The OpenSSH client is used when `ssh` is on PATH (connection reuse, the user's ssh config and
agent); asyncssh otherwise, so `pip install rayctl[ssh]` alone is enough. `RAYCTL_SSH_CLIENT`
(`openssh` | `asyncssh`) overrides the choice.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from providers.base import ConfigError
from providers.ssh.asyncssh_runner import AsyncSSHRunner
from providers.ssh.openssh_runner import OpenSSHRunner
from providers.ssh.target import SSHTarget, target_from_auth

CLIENT_ENV = "RAYCTL_SSH_CLIENT"
CLIENTS = ("openssh", "asyncssh")

SSHRunner = AsyncSSHRunner | OpenSSHRunner


def choose_client(preferred: str | None = None) -> str:
    """`preferred`, else $RAYCTL_SSH_CLIENT, else openssh when `ssh` is installed."""
    choice = preferred or os.environ.get(CLIENT_ENV) or ""
    if choice and choice not in CLIENTS:
        raise ConfigError(f"unknown SSH client {choice!r} (from {CLIENT_ENV}?); one of {CLIENTS}")
    if choice:
        return choice
    return "openssh" if shutil.which("ssh") else "asyncssh"


def runner_for(
    host: str,
    auth_config: Mapping[str, Any] | Any | None,
    *,
    port: int = 22,
    node_env: Mapping[str, str] | None = None,
    client: str | None = None,
    control_dir: Path | None = None,
) -> SSHRunner:
    """A runner for `host` (or `host:port`) with the cluster YAML's `auth:` section
    (ssh_user, ssh_private_key, ssh_proxy_command; a mapping or an AuthConfig)."""
    target = target_from_auth(host, auth_config, port=port)
    if choose_client(client) == "openssh":
        return OpenSSHRunner(target, node_env=node_env, control_dir=control_dir)
    return AsyncSSHRunner(target, node_env=node_env)


__all__ = [
    "AsyncSSHRunner",
    "OpenSSHRunner",
    "SSHRunner",
    "SSHTarget",
    "choose_client",
    "runner_for",
    "target_from_auth",
]

"""Where an SSH runner connects and what it sends: the target (host, user, key, port, proxy), the
remote command line built from a command and its environment, and the errors for a host that does
not answer, each naming host, user and key with the fix. Pure: no sockets, no processes."""

from __future__ import annotations

import enum
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from providers.base import AuthError, ConfigError, ProviderError, TransientError
from providers.login import DEFAULT_SSH_USER

DEFAULT_CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_INTERVAL_S = 5  # Ray's ServerAliveInterval: a dead link is noticed in ~15 s
KEEPALIVE_COUNT_MAX = 3
TIMEOUT_EXIT_CODE = 124  # what coreutils' `timeout` returns, as the local runner does
# Extra seconds the client waits past a command's own timeout before giving up on the channel:
# the remote `timeout` should have ended it first (and returned its output).
CLIENT_TIMEOUT_MARGIN_S = 10.0
# Names that hold a secret by convention; their values must not appear on a command line, where
# `ps` on either machine shows them. `..._FILE` names hold a path and are fine.
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE_KEY)$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class SSHTarget:
    """One node as SSH sees it. `key_path` "" means the agent / default keys."""

    host: str
    user: str = DEFAULT_SSH_USER
    key_path: str = ""
    port: int = 22
    proxy_command: str = ""
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def key_label(self) -> str:
        return self.key_path or "(no key configured: agent and default keys)"


def target_from_auth(
    host: str, auth: Mapping[str, Any] | Any | None, *, port: int = 22, **overrides: Any
) -> SSHTarget:
    """An `SSHTarget` from the cluster YAML's `auth:` section (a mapping or `AuthConfig`).

    `host` may carry its own port as `host:port` (on-prem hosts sharing an address)."""
    fields = _auth_fields(auth)
    host, port = split_host_port(host, port)
    return SSHTarget(
        host=host,
        user=str(fields.get("ssh_user") or DEFAULT_SSH_USER),
        key_path=str(fields.get("ssh_private_key") or ""),
        port=port,
        proxy_command=str(fields.get("ssh_proxy_command") or ""),
        **overrides,
    )


def split_host_port(host: str, default_port: int) -> tuple[str, int]:
    name, sep, port = host.rpartition(":")
    if sep and name and port.isdigit() and ":" not in name:  # not an IPv6 literal
        return name, int(port)
    return host, default_port


def _auth_fields(auth: Mapping[str, Any] | Any | None) -> dict[str, Any]:
    if auth is None:
        return {}
    if isinstance(auth, Mapping):
        return dict(auth)
    dump = getattr(auth, "model_dump", None)
    if callable(dump):
        return dict(dump())
    raise ConfigError(f"auth must be a mapping or AuthConfig, got {type(auth).__name__}")


# --- the remote command line ---------------------------------------------------------------


def check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """Refuse names that are not shell names, and secret values (pass those as a file)."""
    checked: dict[str, str] = {}
    for name, value in (env or {}).items():
        if not _ENV_NAME.match(name):
            raise ConfigError(f"environment variable name {name!r} is not a valid shell name")
        if _SECRET_NAME.search(name):
            raise ConfigError(
                f"refusing to put {name} on a command line, where `ps` shows it; copy the "
                f"secret to the node with put_file and pass its path instead "
                f"(as RAYCTL_TOKEN_FILE is)"
            )
        checked[name] = str(value)
    return checked


def remote_command(
    command: str, env: Mapping[str, str] | None = None, timeout_s: float | None = None
) -> str:
    """The string sshd hands to the login shell: a login bash (so ~/.profile's PATH applies,
    as in Ray) running the exports then the command, under coreutils `timeout` when asked,
    so the command itself is stopped on the node, not only our end of the channel."""
    exports = check_env(env)
    script = command
    if exports:
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in exports.items())
        script = f"export {assignments}; {command}"
    line = f"bash --login -c {shlex.quote(script)}"
    if timeout_s is not None:
        seconds = max(timeout_s, 0.001)
        line = f"timeout --kill-after=2 {seconds:g} {line}"
    return line


def timeout_note(timeout_s: float | None) -> str:
    return f"\n[timed out after {timeout_s} s]\n"


# --- a host that does not answer -------------------------------------------------------------


class Failure(enum.StrEnum):
    REFUSED = "refused"
    TIMEOUT = "timeout"
    AUTH = "auth"
    NO_KEY = "no-key"
    UNRESOLVED = "unresolved"
    OTHER = "other"


_FIXES: dict[Failure, str] = {
    Failure.REFUSED: "nothing accepts SSH on that port: check the host is up and sshd runs "
    "there, and that the address (and ssh_port) in the config is right",
    Failure.TIMEOUT: "the host did not answer in time: check the address, that a firewall or "
    "security group lets port {port} in from here, or set auth.ssh_proxy_command",
    Failure.AUTH: "the host refused the key: check auth.ssh_user, and that the public half of "
    "auth.ssh_private_key is in ~{user}/.ssh/authorized_keys on the host",
    Failure.NO_KEY: "auth.ssh_private_key names a file that cannot be read: fix the path or "
    "its permissions (it must be readable by you only, chmod 600)",
    Failure.UNRESOLVED: "the host name does not resolve: check head_ip / worker_ips or the DNS",
    Failure.OTHER: "check that the host is up and reachable over SSH from here",
}


def classify_text(text: str) -> Failure:
    """Map an SSH client's error text (OpenSSH stderr or an exception message) to a kind."""
    lowered = text.lower()
    if "permission denied" in lowered or ("auth" in lowered and "fail" in lowered):
        return Failure.AUTH
    if "connection refused" in lowered:
        return Failure.REFUSED
    if "timed out" in lowered or "timeout" in lowered:
        return Failure.TIMEOUT
    if "could not resolve" in lowered or "name or service not known" in lowered:
        return Failure.UNRESOLVED
    if "no such identity" in lowered or "load key" in lowered or "no such file" in lowered:
        return Failure.NO_KEY
    return Failure.OTHER


def connect_error(target: SSHTarget, kind: Failure, detail: str) -> ProviderError:
    """The error for a node we cannot reach, naming host, user and key, with the fix."""
    fix = _FIXES[kind].format(port=target.port, user=target.user)
    message = (
        f"cannot reach {target.where} over SSH as user {target.user!r} with key "
        f"{target.key_label}: {detail.strip().rstrip('.') or kind.value}. Fix: {fix}"
    )
    if kind in (Failure.AUTH, Failure.NO_KEY):
        return AuthError(message)
    return TransientError(message)


def not_ready_error(timeout_s: float, last: ProviderError) -> ProviderError:
    """wait_ready's verdict: the last failure (same type), with the deadline that passed."""
    return type(last)(f"node not ready within {timeout_s:g} s: {last}")


def expanded_proxy_command(target: SSHTarget) -> str:
    """OpenSSH expands %h %p %r in ProxyCommand itself; asyncssh needs it done for it."""
    text = target.proxy_command
    for token, value in (("%h", target.host), ("%p", str(target.port)), ("%r", target.user)):
        text = text.replace(token, value)
    return text.replace("%%", "%")


def login_relative(remote_path: str) -> str:
    """`~/x` as `x`: SFTP servers do not expand `~` and a quoted shell path neither; a path
    relative to the login directory (the home) means the same."""
    if remote_path in ("~", "~/"):
        return "."
    if remote_path.startswith("~/"):
        return remote_path[2:] or "."
    return remote_path

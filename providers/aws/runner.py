"""Placeholder command runner for AWS nodes: the SSH runner is separate, later work."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from providers.base import CommandResult, ProviderError

_NOT_YET = "SSH command runner not available yet"


@dataclass(frozen=True, slots=True)
class PendingSSHRunner:
    """Knows where it would connect; every operation raises until the SSH runner exists."""

    host: str
    user: str = "ubuntu"
    key_path: str = ""

    def run(
        self,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> CommandResult:
        raise ProviderError(f"{_NOT_YET} (cannot run {command!r} on {self.host})")

    def put_file(self, local_path: str, remote_path: str) -> None:
        raise ProviderError(f"{_NOT_YET} (cannot copy {local_path} to {self.host})")

    def wait_ready(self, timeout_s: float) -> None:
        raise ProviderError(f"{_NOT_YET} (cannot reach {self.user}@{self.host})")

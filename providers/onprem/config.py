"""The `provider:` section of `type: onprem` (Ray's `type: local` with head_ip / worker_ips reads
the same), and the host pools it defines. Which hosts are free is decided here, without I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_STOP_COMMAND = "rayctl stop"


class OnPremProviderConfig(BaseModel):
    """Hosts are addresses, or `address:port` when several share an address. An address
    listed twice can hold two nodes at once."""

    model_config = ConfigDict(extra="forbid")

    head_ip: str | None = None
    worker_ips: list[str] = Field(default_factory=list)
    external_head_ip: str | None = None  # Ray's key: the head's address as seen from here
    ssh_port: int = Field(default=22, ge=1, le=65535)
    # Override the cluster's `auth:` section for these hosts (all optional).
    ssh_user: str | None = None
    ssh_private_key: str | None = None
    ssh_proxy_command: str | None = None
    ssh_client: Literal["openssh", "asyncssh"] | None = None  # None: openssh when installed
    # Where the claims live: `<state_dir>/onprem/<cluster>/state.json` (state root as `local`).
    state_dir: str | None = None
    # Run on a host when its node is terminated; a failure is logged, the host still released.
    stop_command: str = DEFAULT_STOP_COMMAND
    stop_timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _has_hosts(self) -> OnPremProviderConfig:
        if not self.head_ip and not self.worker_ips:
            raise ValueError(
                "an onprem provider needs hosts: set head_ip and/or worker_ips "
                "(addresses of machines reachable over SSH)"
            )
        return self

    def pool(self, head: bool) -> list[str]:
        """The hosts a head (or a worker) may be placed on."""
        if head:
            return [self.head_ip] if self.head_ip else []
        return list(self.worker_ips)

    def auth_overrides(self) -> dict[str, str]:
        fields = {
            "ssh_user": self.ssh_user,
            "ssh_private_key": self.ssh_private_key,
            "ssh_proxy_command": self.ssh_proxy_command,
        }
        return {k: v for k, v in fields.items() if v}


class OnPremNodeConfig(BaseModel):
    """A static host has nothing to configure: its resources come from `resources`."""

    model_config = ConfigDict(extra="forbid")


def free_hosts(pool: Sequence[str], claimed: Iterable[str]) -> list[str]:
    """Hosts of `pool` not yet claimed, in the pool's order; a host listed n times offers n
    places. Claims on hosts no longer in the pool (config edited) take nothing from it."""
    taken = Counter(claimed)
    free: list[str] = []
    for host in pool:
        if taken[host] > 0:
            taken[host] -= 1
        else:
            free.append(host)
    return free

"""The node-provider contract: value types, the protocol every provider implements, the errors.

A provider allocates machines and nothing else: it makes no scaling decisions and starts no
services. It imports nothing from `runtime` or `autoscaler`.

Error tree (callers branch on the type; each provider translates its SDK's errors in one place):

    ProviderError
     ├─ CapacityError(offering)  no capacity for that offering now: try the next one, remember it
     ├─ QuotaError(quota)        an account limit: stop launching that kind, tell the user the quota
     ├─ TransientError           throttling / 5xx: retry with jittered backoff
     ├─ InstanceNotFound         the id is unknown to the cloud
     ├─ AuthError                credentials or a permission are missing (the message names it)
     └─ ConfigError              the provider or node_config section cannot work as written
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

# Tags every provider writes on the instances it launches (as labels / tags / record fields).
TAG_CLUSTER = "rayctl-cluster-name"
TAG_NODE_TYPE = "rayctl-node-type"
TAG_NODE_KIND = "rayctl-node-kind"  # "head" | "worker"
TAG_LAUNCH_HASH = "rayctl-launch-config"
TAG_REQUEST_ID = "rayctl-request-id"
TAG_NAME = "Name"

NODE_KIND_HEAD = "head"
NODE_KIND_WORKER = "worker"


class Market(enum.StrEnum):
    ON_DEMAND = "on-demand"
    SPOT = "spot"


@dataclass(frozen=True, slots=True)
class Offering:
    """One way to get a node of a type: an instance type in a zone on a market."""

    instance_type: str
    zone: str = ""
    market: Market = Market.ON_DEMAND

    def key(self) -> str:
        return f"{self.instance_type}/{self.zone or '-'}/{self.market.value}"


class ProviderState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    node_type: str
    offering: Offering
    state: ProviderState
    internal_ip: str = ""
    external_ip: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    launched_at: float = 0.0  # unix seconds

    @property
    def is_head(self) -> bool:
        return self.tags.get(TAG_NODE_KIND) == NODE_KIND_HEAD


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int
    output: str  # stdout and stderr interleaved, as a person would have seen them


class CommandRunner(Protocol):
    """Runs commands on one node. Returned by `NodeProvider.command_runner`."""

    @property
    def on_this_machine(self) -> bool:
        """True when the node's commands run on the machine that holds this runner (a local
        slot, a simulated instance): the node already has this rayctl installed, and its
        services must bind 127.0.0.1, since any address its provider reports is not one of
        this machine's. False for a node reached over the network (SSH)."""
        ...

    def run(
        self,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> CommandResult:
        """Run a shell command on the node; never raises for a non-zero exit code."""
        ...

    def put_file(self, local_path: str, remote_path: str) -> None:
        """Copy a file or directory to the node (parent directories are created)."""
        ...

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the node answers commands; raise ProviderError naming host/user/key."""
        ...


class ForwardedPort(Protocol):
    """A node's port reachable on this machine's 127.0.0.1:`local_port` until `close`."""

    @property
    def local_port(self) -> int: ...

    def close(self) -> None: ...


class PortForwarder(Protocol):
    """What a runner that reaches its node over the network (SSH) also does."""

    def forward_port(self, remote_port: int, local_port: int = 0) -> ForwardedPort:
        """Forward the node's 127.0.0.1:`remote_port` to this machine's `local_port` (0: a free
        one); raise ProviderError when the node cannot be reached or the local port is taken."""
        ...


# --- errors -------------------------------------------------------------------------------


class ProviderError(Exception):
    """Base of every error a provider raises."""


class CapacityError(ProviderError):
    def __init__(self, offering: Offering, message: str = "") -> None:
        self.offering = offering
        super().__init__(message or f"no capacity for {offering.key()}")


class QuotaError(ProviderError):
    def __init__(self, quota: str, message: str = "") -> None:
        self.quota = quota
        super().__init__(message or f"quota exceeded: {quota}")


class TransientError(ProviderError):
    pass


class InstanceNotFound(ProviderError):
    pass


class AuthError(ProviderError):
    pass


class ConfigError(ProviderError):
    pass


# --- the protocol ---------------------------------------------------------------------------


@runtime_checkable
class NodeProvider(Protocol):
    """Allocates and releases machines for one cluster.

    Constructed as `Provider(cluster_name, provider_config: dict, node_types: dict, *, auth=...)`
    (see providers/registry.py) where `node_types` maps a node type name to its
    `available_node_types` entry (with `node_config`) and `auth` is the cluster's `auth:`
    section. Further keyword parameters are seams for tests and plug-ins (a command-runner
    factory, an API endpoint); their defaults are what production uses.
    """

    #: validates this provider's `provider:` section; `node_config_model` each type's node_config
    config_model: type[BaseModel]
    node_config_model: type[BaseModel]
    # Optional: `tls_by_default = True` when nodes talk over networks the cluster does not own
    # (a cloud's); the default head start command then adds --tls (autoscaler/config.py).

    def bootstrap(self) -> dict[str, Any]:
        """Create or find prerequisites (networks, keys, roles). Idempotent: a second call
        changes nothing and returns the same resolved provider config."""
        ...

    def offerings(self, node_type: str) -> list[Offering]:
        """The offerings of a node type in the config's order of preference."""
        ...

    def node_resources(self, node_type: str) -> dict[str, float]:
        """CPU / memory / GPU (and accelerator_type:<model>) of a type, for configs that leave
        `resources` out. Empty when the provider cannot know."""
        ...

    def launch(
        self,
        node_type: str,
        offering: Offering,
        count: int,
        request_id: str,
        *,
        tags: Mapping[str, str] | None = None,
        all_or_nothing: bool = False,
    ) -> list[Instance]:
        """Start `count` instances of one type on one offering, in as few cloud calls as the
        API allows (one RunInstances, one bulkInsert): the autoscaler sends a whole batch here.

        Idempotent per `request_id`: when instances tagged with it exist (an earlier call made
        them, on whatever offering), those are returned and nothing is launched — a monitor
        that died mid-call resends the batch this way. May return fewer than `count` (the
        cloud granted part) unless `all_or_nothing` (a gang), in which case it returns all or
        raises and leaves nothing behind. Raises CapacityError when the offering can give
        none, else QuotaError / TransientError / AuthError / ConfigError."""
        ...

    def terminate(self, instance_ids: Sequence[str]) -> None:
        """Release instances. Unknown or already terminated ids count as success."""
        ...

    def list_instances(self) -> list[Instance]:
        """Every non-terminated instance of this cluster, in one pass. May lag a launch by a
        few seconds under eventual consistency."""
        ...

    def command_runner(self, instance: Instance) -> CommandRunner:
        """A runner for commands on the instance (SSH for clouds, local for local slots)."""
        ...

    def purge(self) -> None:
        """Delete what `bootstrap` created (rayctl down --purge); only that."""
        ...

    def end_machine_command(self, node_type: str) -> str | None:
        """The shell command a worker node of this type runs on itself once its head has been
        unreachable for the cluster's `head_lost_timeout_minutes` and its raylet has stopped
        (runtime/raylet/head_loss.py). It runs once, detached, as the login user, with nobody
        left to call this provider: on a cloud it must end the billing by itself (power off a
        VM whose shutdown terminates it, or delete the VM); where rayctl does not own the
        machine (local slots, on-prem hosts) it stops rayctl's services only. None: nothing
        beyond the raylet stopping itself."""
        ...

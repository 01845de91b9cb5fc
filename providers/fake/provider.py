"""`FakeProvider`: an in-memory cloud with knobs, for planner scenarios and scale tests.

Knobs (attributes, also settable from the `provider:` section): `capacity` (instances an
offering can still give, keyed by offering key or instance type; absent = unlimited),
`launch_delay_s` (instances stay PENDING that long on the injected clock), `quota` (most live
instances at once), `next_error` (method name -> exception raised once by its next call).
Every call is appended to `calls` as (method, {argument: value}).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from providers.base import (
    TAG_CLUSTER,
    TAG_NODE_TYPE,
    TAG_REQUEST_ID,
    CapacityError,
    CommandResult,
    ConfigError,
    Instance,
    Market,
    Offering,
    ProviderState,
    QuotaError,
)
from providers.fake.clock import Clock, system_clock


class FakeProviderConfig(BaseModel):
    """The `provider:` section for `type: fake` (without `type`)."""

    model_config = ConfigDict(extra="forbid")

    launch_delay_s: float = Field(default=0.0, ge=0)
    capacity: dict[str, int] = Field(default_factory=dict)
    quota: int | None = Field(default=None, ge=0)


class FakeNodeConfig(BaseModel):
    """A fake type's `node_config`: offerings are instance_type x zones, in that order."""

    model_config = ConfigDict(extra="forbid")

    instance_type: str | list[str] | None = None  # default: the node type's name
    zones: list[str] = Field(default_factory=list)
    market: Market = Market.ON_DEMAND
    resources: dict[str, float] = Field(default_factory=dict)


@dataclass(slots=True)
class _Record:
    """The fake cloud's own mutable row for one instance."""

    instance: Instance
    ready_at: float
    terminated: bool = False


@dataclass(slots=True)
class FakeCommandRunner:
    """Records commands; answers from `provider.command_results` (substring match) or exit 0."""

    instance_id: str
    provider: FakeProvider
    files: list[tuple[str, str]] = field(default_factory=list)

    @property
    def on_this_machine(self) -> bool:
        return False  # a fake cloud's machine: elsewhere, at its made-up internal IP

    def run(
        self,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> CommandResult:
        self.provider.commands.append((self.instance_id, command))
        for needle, result in self.provider.command_results.items():
            if needle in command:
                return result
        return CommandResult(exit_code=0, output="")

    def put_file(self, local_path: str, remote_path: str) -> None:
        self.files.append((local_path, remote_path))

    def wait_ready(self, timeout_s: float) -> None:
        return None


class FakeProvider:
    """In memory, thread-safe; time comes from `clock` (use `FakeClock` for virtual time)."""

    config_model = FakeProviderConfig
    node_config_model = FakeNodeConfig

    def __init__(
        self,
        cluster_name: str,
        provider_config: Mapping[str, Any] | None = None,
        node_types: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        auth: Mapping[str, Any] | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.cluster_name = cluster_name
        self.provider_config = dict(provider_config or {})
        settings = FakeProviderConfig.model_validate(
            {k: v for k, v in self.provider_config.items() if k != "type"}
        )
        self.node_types = {name: dict(entry) for name, entry in (node_types or {}).items()}
        self.clock = clock
        self.capacity: dict[str, int] = dict(settings.capacity)
        self.launch_delay_s = settings.launch_delay_s
        self.quota = settings.quota
        self.next_error: dict[str, BaseException] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.commands: list[tuple[str, str]] = []
        self.command_results: dict[str, CommandResult] = {}
        self.bootstrapped = False
        self.purged = False
        self.end_command: str | None = None  # what end_machine_command answers
        self._records: dict[str, _Record] = {}
        self._counter = 0
        self._lock = threading.RLock()

    # --- knobs ------------------------------------------------------------------------------

    def fail_next(self, method: str, error: BaseException) -> None:
        """Make the next call of `method` raise `error` (once)."""
        self.next_error[method] = error

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        return [args for name, args in self.calls if name == method]

    # --- the provider contract ------------------------------------------------------------

    def bootstrap(self) -> dict[str, Any]:
        self._enter("bootstrap")
        self.bootstrapped = True
        return dict(self.provider_config)

    def offerings(self, node_type: str) -> list[Offering]:
        node_config = self._node_config(node_type)
        kinds = node_config.instance_type or node_type
        types = [kinds] if isinstance(kinds, str) else list(kinds)
        zones = node_config.zones or [""]
        return [Offering(t, zone, node_config.market) for t in types for zone in zones]

    def node_resources(self, node_type: str) -> dict[str, float]:
        return dict(self._node_config(node_type).resources)

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
        with self._lock:
            self._enter(
                "launch", node_type=node_type, offering=offering, count=count,
                request_id=request_id, tags=dict(tags or {}), all_or_nothing=all_or_nothing,
            )
            existing = [r for r in self._live() if r.instance.tags.get(TAG_REQUEST_ID) == request_id]
            if existing:
                return [self._view(r) for r in existing]
            if node_type not in self.node_types:
                raise ConfigError(f"unknown node type {node_type!r} for the fake provider")
            granted = self._grant(offering, count, all_or_nothing)
            return [self._create(node_type, offering, request_id, tags) for _ in range(granted)]

    def terminate(self, instance_ids: Sequence[str]) -> None:
        with self._lock:
            self._enter("terminate", instance_ids=list(instance_ids))
            for instance_id in instance_ids:
                record = self._records.get(instance_id)
                if record is not None:
                    record.terminated = True

    def list_instances(self) -> list[Instance]:
        with self._lock:
            self._enter("list_instances")
            return [self._view(r) for r in self._live()]

    def command_runner(self, instance: Instance) -> FakeCommandRunner:
        self._enter("command_runner", instance_id=instance.id)
        return FakeCommandRunner(instance.id, self)

    def purge(self) -> None:
        self._enter("purge")
        self.purged = True

    def end_machine_command(self, node_type: str) -> str | None:
        return self.end_command

    # --- internals ------------------------------------------------------------------------

    def _enter(self, method: str, **args: Any) -> None:
        """Record the call, then raise the injected error for it, if any (once)."""
        with self._lock:
            self.calls.append((method, args))
            error = self.next_error.pop(method, None)
        if error is not None:
            raise error

    def _node_config(self, node_type: str) -> FakeNodeConfig:
        if node_type not in self.node_types:
            raise ConfigError(f"unknown node type {node_type!r} for the fake provider")
        return FakeNodeConfig.model_validate(self.node_types[node_type].get("node_config") or {})

    def _live(self) -> list[_Record]:
        return [r for r in self._records.values() if not r.terminated]

    def _grant(self, offering: Offering, count: int, all_or_nothing: bool) -> int:
        """How many of `count` the fake cloud gives now; raises when it gives none (or, with
        all_or_nothing, fewer than asked)."""
        if count <= 0:
            return 0
        if self.quota is not None:
            room = self.quota - len(self._live())
            if room <= 0 or (all_or_nothing and room < count):
                raise QuotaError("fake-instances", f"quota of {self.quota} live instances reached")
            count = min(count, room)
        key = self._capacity_key(offering)
        if key is None:
            return count
        granted = min(count, self.capacity[key])
        if granted == 0 or (all_or_nothing and granted < count):
            raise CapacityError(offering)
        self.capacity[key] -= granted
        return granted

    def _capacity_key(self, offering: Offering) -> str | None:
        for key in (offering.key(), offering.instance_type):
            if key in self.capacity:
                return key
        return None

    def _create(
        self, node_type: str, offering: Offering, request_id: str, tags: Mapping[str, str] | None
    ) -> Instance:
        self._counter += 1
        number = self._counter
        all_tags = {
            **(tags or {}),
            TAG_CLUSTER: self.cluster_name,
            TAG_NODE_TYPE: node_type,
            TAG_REQUEST_ID: request_id,
        }
        now = self.clock()
        instance = Instance(
            id=f"fake-{number}",
            node_type=node_type,
            offering=offering,
            state=ProviderState.PENDING,
            internal_ip=f"10.0.{number // 250}.{number % 250 + 1}",
            tags=all_tags,
            launched_at=now,
        )
        record = _Record(instance, ready_at=now + self.launch_delay_s)
        self._records[instance.id] = record
        return self._view(record)

    def _view(self, record: _Record) -> Instance:
        if record.terminated:
            state = ProviderState.TERMINATED
        elif self.clock() >= record.ready_at:
            state = ProviderState.RUNNING
        else:
            state = ProviderState.PENDING
        return replace(record.instance, state=state)

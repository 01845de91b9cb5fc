"""The cluster YAML: pydantic models with Ray's key names, validation, defaults, launch hashes.

`load_config(path)` reads and validates a file (None: the packaged local default) and raises one
`ClusterConfigError` listing every problem by path with a hint, before anything is created.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.resources
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from autoscaler.config_keys import (
    RAY_ONLY_PROVIDER_TYPES,
    UNSUPPORTED_NODE_TYPE,
    UNSUPPORTED_TOP_LEVEL,
    describe_validation_error,
    nearest,
    screen_keys,
)

if TYPE_CHECKING:
    from providers.base import NodeProvider

log = structlog.get_logger(__name__)

# Relative paths resolve against the node's working directory: the SSH login directory on a VM,
# the slot directory for a local node. `up` ships the resolved config there under this name.
BOOTSTRAP_CONFIG_NAME = "rayctl_cluster.yaml"
DEFAULT_HEAD_START_COMMANDS = [f"rayctl start --head --autoscaling-config={BOOTSTRAP_CONFIG_NAME}"]
DEFAULT_WORKER_START_COMMANDS = ["rayctl start --address=$RAYCTL_HEAD_ADDRESS"]


class ClusterConfigError(ValueError):
    """A cluster config that cannot work; `errors` lists every problem, one line each."""

    def __init__(self, errors: list[str], source: str = "") -> None:
        # one line each, whatever a key or value held (a newline in a node type name, say)
        self.errors = ["".join(c if c.isprintable() else repr(c)[1:-1] for c in e) for e in errors]
        where = f" {source}" if source else ""
        count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"invalid cluster config{where} ({count}):\n{lines}")


# --- value types with the messages a person should read ---------------------------------------


MAX_NUMBER = 1e15  # past any sane amount, count or timeout (memory in bytes included)
MAX_COUNT = 1_000_000  # workers of a cluster or a type


def _non_negative_number(value: Any) -> int | float:
    bad = isinstance(value, bool) or not isinstance(value, int | float)
    if bad or not math.isfinite(value) or not 0 <= value <= MAX_NUMBER:
        raise PydanticCustomError(
            "non_negative_number", f"must be a finite number from 0 to {MAX_NUMBER:g}"
        )
    return value


def _positive_finite_number(value: Any) -> int | float:
    bad = isinstance(value, bool) or not isinstance(value, int | float)
    if bad or not math.isfinite(value) or value <= 0:
        raise PydanticCustomError("positive_finite_number", "must be a finite number > 0")
    return value


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise PydanticCustomError(
            "non_negative_int", f"must be a whole number from 0 to {MAX_COUNT:,}"
        )
    return value


def _safe_name(value: Any) -> bool:
    """1-64 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit."""
    ok = isinstance(value, str) and value.isascii() and value[:1].isalnum()
    return ok and all(c.isalnum() or c in "-_." for c in value) and len(value) <= 64


def _cluster_name(value: Any) -> str:
    if not _safe_name(value):
        raise PydanticCustomError(
            "cluster_name",
            "must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit "
            "(it names tags, labels and directories)",
        )
    return str(value)


def _node_type_name(value: Any) -> str:
    if not _safe_name(value):
        raise PydanticCustomError(
            "node_type_name",
            "must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit "
            "(it goes into tags, labels, file names and shell commands); rename the node type",
        )
    return str(value)


# `int | float` so a YAML `CPU: 1` dumps back as 1, not 1.0.
NonNegativeNumber = Annotated[int | float, PlainValidator(_non_negative_number)]
NonNegativeInt = Annotated[int, PlainValidator(_non_negative_int)]
PositiveFiniteNumber = Annotated[int | float, PlainValidator(_positive_finite_number)]
ClusterName = Annotated[str, PlainValidator(_cluster_name)]
NodeTypeName = Annotated[str, PlainValidator(_node_type_name)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthConfig(_Model):
    """How the launcher reaches nodes over SSH (unused by the local provider)."""

    ssh_user: str = "ubuntu"
    ssh_private_key: str | None = None
    ssh_public_key: str | None = None
    ssh_proxy_command: str | None = None


class NodeTypeConfig(_Model):
    """One entry of `available_node_types`."""

    node_config: dict[str, Any] = Field(default_factory=dict)
    # None: ask the provider (`node_resources`) when the autoscaler needs the shape.
    resources: dict[str, NonNegativeNumber] | None = None
    min_workers: NonNegativeInt = 0
    # None only before resolution; `load_config` fills it (head type: 0, others: global cap).
    max_workers: NonNegativeInt | None = None
    idle_timeout_s: NonNegativeNumber | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    # When set, these replace the global lists for this type (Ray's semantics).
    initialization_commands: list[str] | None = None
    worker_setup_commands: list[str] | None = None


class ClusterConfig(_Model):
    """A validated, resolved cluster config. Field names are Ray's."""

    cluster_name: ClusterName
    max_workers: NonNegativeInt = 2
    upscaling_speed: NonNegativeNumber = 1.0
    idle_timeout_minutes: NonNegativeNumber = 5
    # a worker without its head this long stops and ends its machine (runtime/raylet/head_loss.py)
    head_lost_timeout_minutes: PositiveFiniteNumber = 10
    provider: dict[str, Any]
    auth: AuthConfig = Field(default_factory=AuthConfig)
    available_node_types: dict[NodeTypeName, NodeTypeConfig]
    head_node_type: NodeTypeName
    file_mounts: dict[str, str] = Field(default_factory=dict)  # remote path -> local path
    cluster_synced_files: list[str] = Field(default_factory=list)
    file_mounts_sync_continuously: bool = False
    rsync_exclude: list[str] = Field(default_factory=list)
    rsync_filter: list[str] = Field(default_factory=list)
    initialization_commands: list[str] = Field(default_factory=list)
    setup_commands: list[str] = Field(default_factory=list)
    head_setup_commands: list[str] = Field(default_factory=list)
    worker_setup_commands: list[str] = Field(default_factory=list)
    head_start_ray_commands: list[str] = Field(
        default_factory=lambda: list(DEFAULT_HEAD_START_COMMANDS)
    )
    worker_start_ray_commands: list[str] = Field(
        default_factory=lambda: list(DEFAULT_WORKER_START_COMMANDS)
    )
    no_restart: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)  # user data, never interpreted
    # Messages about ignored keys; not part of the config itself.
    warnings: list[str] = Field(default_factory=list, exclude=True)

    @property
    def provider_type(self) -> str:
        return str(self.provider["type"])

    def node_type(self, name: str) -> NodeTypeConfig:
        try:
            return self.available_node_types[name]
        except KeyError:
            known = ", ".join(sorted(self.available_node_types))
            raise KeyError(f"unknown node type {name!r}; known: {known}") from None

    def worker_max(self, name: str) -> int:
        """The resolved per-type cap (always set after `load_config`)."""
        value = self.node_type(name).max_workers
        return self.max_workers if value is None else value

    def idle_timeout_s(self, name: str) -> float:
        """Per-type `idle_timeout_s`, else the global `idle_timeout_minutes`."""
        own = self.node_type(name).idle_timeout_s
        return float(own) if own is not None else float(self.idle_timeout_minutes) * 60.0

    @property
    def head_lost_timeout_s(self) -> float:
        return float(self.head_lost_timeout_minutes) * 60.0

    def initialization_commands_for(self, name: str) -> list[str]:
        own = self.node_type(name).initialization_commands
        return list(own) if own is not None else list(self.initialization_commands)

    def setup_commands_for(self, name: str, *, head: bool) -> list[str]:
        """Ray's merge: common setup + head/worker setup; a type's own list replaces the
        worker lists."""
        if head:
            return [*self.setup_commands, *self.head_setup_commands]
        own = self.node_type(name).worker_setup_commands
        if own is not None:
            return list(own)
        return [*self.setup_commands, *self.worker_setup_commands]

    def start_commands_for(self, *, head: bool) -> list[str]:
        return list(self.head_start_ray_commands if head else self.worker_start_ray_commands)

    def node_types_for_provider(self) -> dict[str, dict[str, Any]]:
        """The `node_types` argument every provider constructor takes."""
        return {
            name: entry.model_dump(mode="json", exclude_none=True)
            for name, entry in self.available_node_types.items()
        }

    def launch_hash(self, node_type: str, *, head: bool | None = None) -> str:
        """A stable hash of everything that makes a node of this type what it is.

        In: provider section, node_config, auth, resources, labels, initialization / setup /
        start commands (head or worker lists), file_mounts and cluster_synced_files *paths*
        (not file contents: the updater re-syncs changed files without replacing the node).
        Out: min/max_workers, idle timeouts, head_lost_timeout_minutes, upscaling_speed,
        metadata, no_restart.
        `head` defaults to `node_type == head_node_type`; pass False for a worker of the
        head's type. 32 hex chars, because GCP label values stop at 63 characters.
        """
        is_head = node_type == self.head_node_type if head is None else head
        entry = self.node_type(node_type)
        material = {
            "provider": self.provider,
            "node_config": entry.node_config,
            "auth": self.auth.model_dump(mode="json"),
            "resources": entry.resources,
            "labels": entry.labels,
            "initialization_commands": self.initialization_commands_for(node_type),
            "setup_commands": self.setup_commands_for(node_type, head=is_head),
            "start_commands": self.start_commands_for(head=is_head),
            "file_mounts": self.file_mounts,
            "cluster_synced_files": self.cluster_synced_files,
        }
        blob = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (Ray key names); `validate_config` accepts it."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def open_provider(config: ClusterConfig) -> NodeProvider:
    """The provider the config names, constructed (not bootstrapped)."""
    from providers.registry import build_provider

    return build_provider(
        config.cluster_name,
        config.provider,
        config.node_types_for_provider(),
        auth=config.auth.model_dump(mode="json", exclude_none=True),
    )


# --- loading ------------------------------------------------------------------------------------

_TOP_LEVEL_KEYS = [k for k in ClusterConfig.model_fields if k != "warnings"]
_NODE_TYPE_KEYS = list(NodeTypeConfig.model_fields)
_AUTH_KEYS = list(AuthConfig.model_fields)


def default_config_path() -> Path:
    """The packaged local default (`rayctl up` with no file)."""
    return Path(str(importlib.resources.files("autoscaler.defaults") / "local.yaml"))


def load_config(path: str | Path | None = None) -> ClusterConfig:
    """Read and validate a cluster YAML; None means the packaged local default."""
    file = Path(path).expanduser() if path is not None else default_config_path()
    try:
        text = file.read_text()
    except OSError as exc:
        raise ClusterConfigError([f"{file}: cannot read: {exc.strerror}"]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ClusterConfigError([f"{file}: not valid YAML: {exc}"]) from exc
    config = validate_config(raw, source=str(file))
    for warning in config.warnings:
        log.warning("cluster config key ignored", config=str(file), detail=warning)
    return config


def validate_config(raw: Any, source: str = "") -> ClusterConfig:
    """Validate a parsed cluster YAML and resolve its defaults, or raise ClusterConfigError."""
    if not isinstance(raw, Mapping):
        got = type(raw).__name__ if raw is not None else "an empty file"
        raise ClusterConfigError([f"top level: must be a mapping of keys, got {got}"], source)
    errors: list[str] = []
    warnings: list[str] = []
    data = _screen(raw, errors, warnings)
    _resolve_defaults(data, errors)
    config: ClusterConfig | None = None
    try:
        config = ClusterConfig.model_validate(data)
    except ValidationError as exc:
        # A path already reported with a better hint (head_node_type) is not repeated.
        reported = {e.split(":")[0] for e in errors}
        errors.extend(e for e in describe_validation_error(exc) if e.split(":")[0] not in reported)
    errors.extend(_cross_checks(data))
    errors.extend(_provider_checks(data))
    if errors or config is None:
        raise ClusterConfigError(errors, source)
    update: dict[str, Any] = {"warnings": warnings}
    if "head_start_ray_commands" not in raw and _tls_by_default(data["provider"]):
        update["head_start_ray_commands"] = [f"{c} --tls" for c in DEFAULT_HEAD_START_COMMANDS]
    return config.model_copy(update=update)


def _tls_by_default(provider: Mapping[str, Any]) -> bool:
    """Whether the provider's nodes cross networks the cluster does not own (a cloud's)."""
    cls, _ = _load_provider_class(provider)
    return bool(getattr(cls, "tls_by_default", False))


def _screen(raw: Mapping[str, Any], errors: list[str], warnings: list[str]) -> dict[str, Any]:
    """Key checks at every level, plus Ray's on-prem spelling of the provider."""
    data = screen_keys(raw, "", _TOP_LEVEL_KEYS, UNSUPPORTED_TOP_LEVEL, errors, warnings)
    data = copy.deepcopy(data)
    if isinstance(data.get("auth"), Mapping):
        data["auth"] = screen_keys(data["auth"], "auth", _AUTH_KEYS, {}, errors, warnings)
    types = data.get("available_node_types")
    if isinstance(types, Mapping):
        data["available_node_types"] = {
            str(name): screen_keys(
                entry, f"available_node_types.{name}", _NODE_TYPE_KEYS,
                UNSUPPORTED_NODE_TYPE, errors, warnings,
            ) if isinstance(entry, Mapping) else entry
            for name, entry in types.items()
        }
    provider = data.get("provider")
    if isinstance(provider, Mapping) and provider.get("type") == "local":
        if provider.get("head_ip") or provider.get("worker_ips"):
            # Ray's static-hosts provider is `type: local` with IPs: ours is `onprem`.
            data["provider"] = {**provider, "type": "onprem"}
    return data


def _resolve_defaults(data: dict[str, Any], errors: list[str]) -> None:
    types = data.get("available_node_types")
    if not isinstance(types, Mapping) or not types:
        return
    if "head_node_type" not in data:
        if len(types) == 1:
            data["head_node_type"] = next(iter(types))
        else:
            errors.append(
                f"head_node_type: is required when there are several node types; "
                f"one of: {', '.join(sorted(types))}"
            )
            return
    global_max = data.get("max_workers", ClusterConfig.model_fields["max_workers"].default)
    if isinstance(global_max, bool) or not isinstance(global_max, int):
        return  # reported by pydantic; a default derived from it would only repeat the error
    for name, entry in types.items():
        if isinstance(entry, dict) and entry.get("max_workers") is None:
            # Ray: the head type launches no extra copies unless asked; others share the cap.
            entry["max_workers"] = 0 if name == data["head_node_type"] else global_max


def _cross_checks(data: Mapping[str, Any]) -> list[str]:
    """Rules between fields; each checks only values that are already well typed."""
    errors: list[str] = []
    types = data.get("available_node_types")
    if not isinstance(types, Mapping):
        return errors
    if not types:
        errors.append("available_node_types: must define at least one node type")
        return errors
    head = data.get("head_node_type")
    if isinstance(head, str) and head not in types:
        guess = nearest(head, types)
        hint = f"did you mean `{guess}`?" if guess else f"one of: {', '.join(sorted(types))}"
        errors.append(f"head_node_type: {json.dumps(head)} is not in available_node_types; {hint}")
    min_total = 0
    for name, entry in types.items():
        if not isinstance(entry, Mapping):
            continue
        low, high = entry.get("min_workers", 0), entry.get("max_workers")
        if _is_int(low) and _is_int(high) and low > high:
            errors.append(
                f"available_node_types.{name}.min_workers: {low} is more than this type's "
                f"max_workers {high}; lower min_workers or raise max_workers"
            )
        if _is_int(low):
            min_total += low
    global_max = data.get("max_workers", 2)
    if _is_int(global_max) and min_total > global_max:
        errors.append(
            f"max_workers: {global_max} is less than the sum of min_workers over node types "
            f"({min_total}); raise max_workers or lower some min_workers"
        )
    return errors


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _provider_checks(data: Mapping[str, Any]) -> list[str]:
    """Validate `provider` and each node_config with the provider's own models."""
    provider = data.get("provider")
    if not isinstance(provider, Mapping):
        return []  # missing / wrong type is reported by pydantic
    kind = provider.get("type")
    if not isinstance(kind, str):
        return [f"provider.type: is required, one of: {', '.join(_provider_names())}"]
    cls, errors = _load_provider_class(provider)
    if cls is None:
        return errors
    from providers.registry import provider_section

    model = getattr(cls, "config_model", None)
    if model is not None:
        errors.extend(_validate_with(model, provider_section(provider), "provider"))
    node_model = getattr(cls, "node_config_model", None)
    types = data.get("available_node_types")
    if node_model is not None and isinstance(types, Mapping):
        for name, entry in types.items():
            node_config = entry.get("node_config", {}) if isinstance(entry, Mapping) else None
            if isinstance(node_config, Mapping):
                path = f"available_node_types.{name}.node_config"
                errors.extend(_validate_with(node_model, dict(node_config), path))
    return errors


def _load_provider_class(provider: Mapping[str, Any]) -> tuple[type[Any] | None, list[str]]:
    from providers import registry
    from providers.base import ConfigError

    kind = str(provider["type"])
    if kind in RAY_ONLY_PROVIDER_TYPES:
        names = ", ".join(_provider_names())
        return None, [f"provider.type: {kind} is not supported by rayctl; supported: {names}"]
    try:
        return registry.provider_class(provider), []
    except ConfigError as exc:
        if kind == registry.EXTERNAL:
            return None, [str(exc)]
        guess = nearest(kind, _provider_names())
        hint = f"did you mean `{guess}`?" if guess else f"one of: {', '.join(_provider_names())}"
        return None, [f"provider.type: unknown provider type {json.dumps(kind)}; {hint}"]
    except ImportError:
        # A built-in provider whose cloud SDK is missing: validated where it is installed.
        return None, []


def _provider_names() -> list[str]:
    from providers import registry

    return registry.provider_names()


def _validate_with(model: type[BaseModel], section: dict[str, Any], path: str) -> list[str]:
    try:
        model.model_validate(section)
    except ValidationError as exc:
        known = list(model.model_fields)
        return describe_validation_error(exc, prefix=path, known_keys=known)
    return []

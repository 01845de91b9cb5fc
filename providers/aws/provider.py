"""AWSProvider: the NodeProvider for EC2. It validates the config, keeps what bootstrap resolved,
and delegates each operation to the module that owns it (bootstrap, launch, instances, ...).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from providers.aws import bootstrap as bootstrap_mod
from providers.aws import instances
from providers.aws import launch as launch_mod
from providers.aws.clients import AWSClients
from providers.aws.config import AWSNodeConfig, AWSProviderConfig, ResolvedResources
from providers.aws.errors import Retrier
from providers.aws.resources import common_resources, resources_of
from providers.base import (
    NODE_KIND_HEAD,
    NODE_KIND_WORKER,
    TAG_CLUSTER,
    TAG_LAUNCH_HASH,
    TAG_NAME,
    TAG_NODE_KIND,
    TAG_NODE_TYPE,
    TAG_REQUEST_ID,
    CommandRunner,
    ConfigError,
    Instance,
    Market,
    Offering,
    ProviderError,
    ProviderState,
)
from providers.login import cloud_login

log = structlog.get_logger("providers.aws")
M = TypeVar("M", bound=BaseModel)

DEFAULT_KEY_DIR = "~/.rayctl/keys"
# How long an instance we launched stays listed although DescribeInstances does not show it yet
# (EC2 is eventually consistent: a fresh instance can be missing for seconds).
LIST_GRACE_S = 120.0


def _validate(model: type[M], data: Mapping[str, Any], where: str) -> M:
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{where}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid AWS config: {problems}") from exc


class AWSProvider:
    """Allocates EC2 instances for one cluster (see providers.base.NodeProvider).

    `command_runner_factory` replaces the SSH runner of each instance (a test's simulated
    instances); `sleep`, `clock` and `rng` drive retries and listing grace on virtual time.
    A subclass may extend `config_model`: the section is validated with the class's model."""

    config_model: type[AWSProviderConfig] = AWSProviderConfig
    node_config_model = AWSNodeConfig
    #: nodes talk over networks the cluster does not own: `up` starts the head with --tls
    tls_by_default = True

    def __init__(
        self,
        cluster_name: str,
        provider_config: Mapping[str, Any],
        node_types: Mapping[str, Mapping[str, Any]],
        *,
        auth: Mapping[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        key_dir: str | Path | None = None,
        batch_size: int = instances.MAX_IDS_PER_CALL,
        retry_attempts: int = 5,
        command_runner_factory: Callable[[Instance], CommandRunner] | None = None,
    ) -> None:
        self.cluster_name = cluster_name
        self._raw_config = dict(provider_config)
        self.config = _validate(self.config_model, provider_config, "provider")
        self._auth = dict(auth or {})
        self._node_types = {name: dict(spec) for name, spec in node_types.items()}
        self._node_configs = {
            name: _validate(
                AWSNodeConfig,
                spec.get("node_config", {}),
                f"available_node_types.{name}.node_config",
            )
            for name, spec in self._node_types.items()
        }
        self.clients = AWSClients(self.config.region)
        self._call = Retrier(sleep, rng or random.Random(), attempts=retry_attempts)
        self._sleep, self._clock = sleep, clock
        self._key_dir = Path(key_dir or self.config.key_dir or DEFAULT_KEY_DIR).expanduser()
        self._batch_size = batch_size
        self._resolved: ResolvedResources | None = self.config.resolved
        self._autofill: dict[str, dict[str, float]] = {}
        self._recent: dict[str, tuple[Instance, float]] = {}  # id -> (instance, launched at)
        self._runner_factory = command_runner_factory or self._ssh_runner
        self._login()  # a contradicting ssh_user is a config error now, not at the first node

    # --- bootstrap / purge ----------------------------------------------------------------

    def _context(self) -> bootstrap_mod.BootstrapContext:
        return bootstrap_mod.BootstrapContext(
            self.clients,
            self._call,
            self.cluster_name,
            self.config,
            self._node_configs,
            self._key_dir,
            self._sleep,
        )

    def bootstrap(self) -> dict[str, Any]:
        self._check_key_pair()
        resolved, warnings = bootstrap_mod.bootstrap(self._context())
        self._resolved = resolved
        log.info("aws.bootstrap", cluster=self.cluster_name, **resolved.model_dump())
        return {**self._raw_config, "resolved": resolved.model_dump(), "warnings": warnings}

    def _check_key_pair(self) -> None:
        """A key of the user's (auth.ssh_private_key) opens only instances launched with its
        EC2 key pair: without KeyName, bootstrap would launch them with a key of its own."""
        if not self._auth.get("ssh_private_key"):
            return
        missing = sorted(name for name, c in self._node_configs.items() if not c.KeyName)
        if missing:
            raise ConfigError(
                f"auth.ssh_private_key is set but available_node_types.{missing[0]}.node_config "
                "has no KeyName: set KeyName (on every node type) to the EC2 key pair of that "
                "key, or remove auth.ssh_private_key to let rayctl create a key pair"
            )

    def purge(self) -> None:
        live = self._describe_cluster()
        active = [i.id for i in live if i.state is not ProviderState.STOPPED]
        if active:
            raise ProviderError(
                f"{len(active)} instances of cluster {self.cluster_name} are still active "
                f"({', '.join(active[:5])}...): run `rayctl down` before purging"
            )
        # Stopped instances are the node cache: purging means leaving nothing behind.
        instances.terminate(self.clients.ec2, self._call, [i.id for i in live], self._batch_size)
        deleted = bootstrap_mod.purge(self._context())
        log.info("aws.purge", cluster=self.cluster_name, deleted=deleted)

    def end_machine_command(self, node_type: str) -> str | None:
        # Workers launch with InstanceInitiatedShutdownBehavior=terminate (launch.py), so a
        # power-off from inside ends the instance and its billing.
        return "sudo shutdown -h now"

    def _describe_cluster(self) -> list[Instance]:
        filters = instances.cluster_filters(self.cluster_name)
        return instances.describe(self.clients.ec2, self._call, filters, self._batch_size)

    def _ensure_resolved(self) -> ResolvedResources:
        if self._resolved is None:
            self.bootstrap()
        assert self._resolved is not None
        return self._resolved

    # --- what the config offers -----------------------------------------------------------

    def _node_config(self, node_type: str) -> AWSNodeConfig:
        try:
            return self._node_configs[node_type]
        except KeyError:
            known = ", ".join(sorted(self._node_configs))
            raise ConfigError(f"unknown node type {node_type!r}; known: {known}") from None

    def _zones(self, node_type: str) -> list[str]:
        if self._resolved is not None and self._resolved.subnets.get(node_type):
            return list(self._resolved.subnets[node_type])
        return self.config.zones() or [""]

    def offerings(self, node_type: str) -> list[Offering]:
        node_config = self._node_config(node_type)
        markets = [Market.SPOT] if node_config.is_spot() else [Market.ON_DEMAND]
        if node_config.is_spot() and self.config.spot_fallback_to_on_demand:
            markets.append(Market.ON_DEMAND)
        zones = self._zones(node_type)
        return [
            Offering(instance_type, zone, market)
            for market in markets
            for instance_type in node_config.instance_types()
            for zone in zones
        ]

    def node_resources(self, node_type: str) -> dict[str, float]:
        types = self._node_config(node_type).instance_types()
        missing = sorted({t for t in types if t not in self._autofill})
        if missing:
            ec2 = self.clients.ec2
            found = self._call(lambda: ec2.describe_instance_types(InstanceTypes=missing))
            for info in found["InstanceTypes"]:
                self._autofill[info["InstanceType"]] = resources_of(info)
        autofilled = common_resources(self._autofill[t] for t in types if t in self._autofill)
        configured = self._node_types[node_type].get("resources") or {}
        return {**autofilled, **{k: float(v) for k, v in configured.items()}}

    # --- launch / list / terminate --------------------------------------------------------

    def _tags(self, node_type: str, request_id: str, extra: Mapping[str, str]) -> dict[str, str]:
        kind = extra.get(TAG_NODE_KIND, NODE_KIND_WORKER)
        tags = {
            TAG_NODE_KIND: kind,
            TAG_LAUNCH_HASH: launch_mod.launch_hash(self._node_config(node_type)),
            TAG_NAME: f"rayctl-{self.cluster_name}-{kind}",
            **extra,
        }
        # These three are what listing and idempotency rely on: never overridden by callers.
        tags.update(
            {TAG_CLUSTER: self.cluster_name, TAG_NODE_TYPE: node_type, TAG_REQUEST_ID: request_id}
        )
        return tags

    def _spec(
        self,
        node_type: str,
        offering: Offering,
        count: int,
        request_id: str,
        tags: Mapping[str, str],
        all_or_nothing: bool,
    ) -> launch_mod.LaunchSpec:
        resolved = self._ensure_resolved()
        node_config = self._node_config(node_type)
        full_tags = self._tags(node_type, request_id, tags)
        profile = node_config.IamInstanceProfile
        if profile is None and full_tags[TAG_NODE_KIND] == NODE_KIND_HEAD:
            profile = {"Arn": resolved.head_instance_profile_arn}
        return launch_mod.LaunchSpec(
            node_type=node_type,
            node_config=node_config,
            offering=offering,
            count=count,
            request_id=request_id,
            tags=full_tags,
            subnet_id=launch_mod.subnet_for(
                resolved.subnets.get(node_type, {}), node_type, offering
            ),
            security_group_ids=node_config.SecurityGroupIds or resolved.security_group_ids,
            image_id=resolved.image_ids.get(node_type) or node_config.ImageId or "",
            key_name=node_config.KeyName or resolved.key_name,
            instance_profile=profile if profile and any(profile.values()) else None,
            all_or_nothing=all_or_nothing,
        )

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
        if count <= 0:
            return []
        # Launched by this process moments ago but perhaps not yet visible to DescribeInstances.
        recent = [i for i, _ in self._recent.values() if i.tags.get(TAG_REQUEST_ID) == request_id]
        if recent:
            return recent
        spec = self._spec(node_type, offering, count, request_id, tags or {}, all_or_nothing)
        launched = launch_mod.launch(
            self.clients.ec2,
            self._call,
            self.cluster_name,
            spec,
            reuse=self.config.cache_stopped_nodes,
            batch_size=self._batch_size,
        )
        now = self._clock()
        for instance in launched:
            self._recent[instance.id] = (instance, now)
        log.info(
            "aws.launch",
            cluster=self.cluster_name,
            node_type=node_type,
            offering=offering.key(),
            request_id=request_id,
            ids=[i.id for i in launched],
        )
        return launched

    def list_instances(self) -> list[Instance]:
        listed = self._describe_cluster()
        seen = {i.id for i in listed}
        now = self._clock()
        for instance_id, (instance, launched_at) in list(self._recent.items()):
            if instance_id in seen or now - launched_at > LIST_GRACE_S:
                del self._recent[instance_id]  # listed now, or too old to be lag
            else:
                listed.append(instance)  # launched moments ago: not lost, just not listed yet
        return listed

    def terminate(self, instance_ids: Sequence[str]) -> None:
        for instance_id in instance_ids:
            self._recent.pop(instance_id, None)
        to_stop: list[str] = []
        cached: set[str] = set()
        if self.config.cache_stopped_nodes:
            # On-demand nodes go to the cache (stopped); spot ones cannot be stopped.
            live = {i.id: i for i in self.list_instances()}
            cached = {
                i for i in instance_ids if i in live and live[i].offering.market is Market.ON_DEMAND
            }
            to_stop = [
                i
                for i in instance_ids
                if i in cached and live[i].state in (ProviderState.PENDING, ProviderState.RUNNING)
            ]
        to_terminate = [i for i in instance_ids if i not in cached]
        instances.stop(self.clients.ec2, self._call, to_stop, self._batch_size)
        instances.terminate(self.clients.ec2, self._call, to_terminate, self._batch_size)
        log.info(
            "aws.terminate", cluster=self.cluster_name, stopped=to_stop, terminated=to_terminate
        )

    def command_runner(self, instance: Instance) -> CommandRunner:
        return self._runner_factory(instance)

    def _ssh_runner(self, instance: Instance) -> CommandRunner:
        from providers.ssh import runner_for

        host = instance.internal_ip if self.config.use_internal_ips else instance.external_ip
        return runner_for(host or instance.internal_ip, self._login())

    def _login(self) -> dict[str, str]:
        """auth: first; else the key bootstrap created (a path on the machine that ran it)."""
        created = self._resolved.ssh_private_key if self._resolved else ""
        return cloud_login(self._auth, provider_user=self.config.ssh_user, provider_key=created)

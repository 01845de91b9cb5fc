"""`OnPremProvider`: a static list of SSH hosts. Launching claims free hosts (nothing starts: the
updater then starts services there); terminating runs `stop_command` on each host and releases
it. Claims live in a per-cluster state file (the local provider's format and lock), so a
restarted monitor or `rayctl down` with the head dead sees the same hosts taken."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import structlog

from providers.base import (
    NODE_KIND_HEAD,
    TAG_CLUSTER,
    TAG_NODE_KIND,
    TAG_NODE_TYPE,
    TAG_REQUEST_ID,
    CapacityError,
    ConfigError,
    Instance,
    Offering,
    ProviderError,
    ProviderState,
)
from providers.local.provider import state_root
from providers.local.state import (
    SLOT_RUNNING,
    SLOT_TERMINATING,
    ClusterState,
    SlotRecord,
    StateFile,
)
from providers.onprem.config import OnPremNodeConfig, OnPremProviderConfig, free_hosts
from providers.ssh import SSHRunner, runner_for
from providers.ssh.target import split_host_port

log = structlog.get_logger("providers.onprem")

ONPREM_OFFERING = Offering("onprem")
TAG_HOST = "rayctl-onprem-host"  # the pool entry (address or address:port) a node holds
_STOP_PARALLELISM = 8


class _ClaimsFile(StateFile):
    """The local provider's state file, with the advice that fits on-prem hosts."""

    def _load(self) -> ClusterState:
        try:
            return super()._load()
        except ProviderError as exc:
            raise ProviderError(
                f"on-prem state file {self.path} is unreadable ({exc.__cause__}); move it aside "
                "(every host then counts as free) and run `rayctl stop` on the hosts by hand"
            ) from exc


class OnPremProvider:
    """Hosts are claimed and released, never created. `auth` is the cluster's `auth:` section
    (ssh_user, ssh_private_key, ssh_proxy_command); the provider section's ssh_* keys win."""

    config_model = OnPremProviderConfig
    node_config_model = OnPremNodeConfig

    def __init__(
        self,
        cluster_name: str,
        provider_config: Mapping[str, Any] | None = None,
        node_types: Mapping[str, Mapping[str, Any]] | None = None,
        auth: Mapping[str, Any] | Any | None = None,
    ) -> None:
        self.cluster_name = cluster_name
        self.provider_config = dict(provider_config or {})
        self.settings = OnPremProviderConfig.model_validate(
            {k: v for k, v in self.provider_config.items() if k != "type"}
        )
        self.node_types = {name: dict(entry) for name, entry in (node_types or {}).items()}
        self.auth = {**_as_dict(auth), **self.settings.auth_overrides()}
        self.root = state_root(self.settings.state_dir)
        self.cluster_dir = self.root / "onprem" / cluster_name
        self.state = _ClaimsFile(self.cluster_dir)

    # --- the provider contract ------------------------------------------------------------

    def bootstrap(self) -> dict[str, Any]:
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        return {**self.provider_config, "state_dir": str(self.root)}

    def offerings(self, node_type: str) -> list[Offering]:
        self._require_type(node_type)
        return [ONPREM_OFFERING]

    def node_resources(self, node_type: str) -> dict[str, float]:
        """Unknown without logging in: on-prem configs state `resources` per type."""
        self._require_type(node_type)
        return {}

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
        """Claims free hosts of the head pool (tag rayctl-node-kind=head) or the worker pool.
        CapacityError when none is free, or fewer than `count` with all_or_nothing."""
        self._require_type(node_type)
        head = (tags or {}).get(TAG_NODE_KIND) == NODE_KIND_HEAD
        if count <= 0:
            return []
        with self.state.locked() as state:
            existing = [
                s for s in state.slots.values()
                if s.tags.get(TAG_REQUEST_ID) == request_id and s.state == SLOT_RUNNING
            ]
            if existing:
                return [self._instance(s) for s in existing]
            pool = self.settings.pool(head)
            # Pools are counted apart: an address in both head_ip and worker_ips is two places.
            claimed = [s.tags[TAG_HOST] for s in state.slots.values() if _is_head(s) == head]
            free = free_hosts(pool, claimed)
            if not free or (all_or_nothing and len(free) < count):
                raise CapacityError(offering, self._no_host_message(head, pool, count, free))
            created = []
            for host in free[:count]:
                slot = self._new_slot(state.next_index, node_type, host, request_id, tags)
                state.next_index += 1
                state.slots[slot.id] = slot
                created.append(self._instance(slot))
        log.info("onprem.launch", cluster=self.cluster_name, request_id=request_id,
                 hosts=[i.tags[TAG_HOST] for i in created])
        return created

    def terminate(self, instance_ids: Sequence[str]) -> None:
        """Runs `stop_command` on each host (in parallel; failures are logged, since a host
        that is down has nothing left running), then releases the hosts."""
        ids = list(dict.fromkeys(instance_ids))
        if not ids or not self.cluster_dir.exists():
            return
        with self.state.locked() as state:
            slots = [state.slots[i] for i in ids if i in state.slots]
            for slot in slots:
                state.slots[slot.id] = replace(slot, state=SLOT_TERMINATING)
        if slots:
            with ThreadPoolExecutor(min(len(slots), _STOP_PARALLELISM)) as pool:
                list(pool.map(self._stop_services, slots))
        with self.state.locked() as state:
            for slot in slots:
                state.slots.pop(slot.id, None)
        if slots:
            log.info("onprem.terminate", cluster=self.cluster_name,
                     released={s.id: s.tags[TAG_HOST] for s in slots})

    def list_instances(self) -> list[Instance]:
        """Every claimed host, from the state file (a terminate interrupted midway included:
        its host is still claimed until a terminate completes)."""
        return [self._instance(s) for s in self.state.read().slots.values()]

    def command_runner(
        self, instance: Instance, node_env: Mapping[str, str] | None = None
    ) -> SSHRunner:
        """An SSH runner for the instance's host; `node_env` is added to every command, after
        RAYCTL_NODE_TYPE and RAYCTL_INSTANCE_ID."""
        host = instance.tags.get(TAG_HOST) or instance.internal_ip
        env = {
            "RAYCTL_NODE_TYPE": instance.node_type,
            "RAYCTL_INSTANCE_ID": instance.id,
            **(node_env or {}),
        }
        return runner_for(host, self.auth, port=self.settings.ssh_port, node_env=env,
                          client=self.settings.ssh_client)

    def purge(self) -> None:
        """Forget the claims; refuses while hosts are still claimed."""
        claimed = [s.id for s in self.state.read().slots.values()]
        if claimed:
            raise ProviderError(
                f"cannot purge on-prem cluster {self.cluster_name!r}: instances {claimed} still "
                "hold hosts; run `rayctl down` first"
            )
        shutil.rmtree(self.cluster_dir, ignore_errors=True)

    def end_machine_command(self, node_type: str) -> str | None:
        # The host is not ours to power off: stop rayctl's services, as terminate does.
        return self.settings.stop_command

    # --- internals ------------------------------------------------------------------------

    def _require_type(self, node_type: str) -> None:
        if self.node_types and node_type not in self.node_types:
            known = ", ".join(sorted(self.node_types))
            raise ConfigError(f"unknown node type {node_type!r}; known: {known}")

    def _no_host_message(self, head: bool, pool: list[str], count: int, free: list[str]) -> str:
        kind, key = ("head", "head_ip") if head else ("worker", "worker_ips")
        return (
            f"no free on-prem {kind} host for {count} node(s): {len(free)} of {len(pool)} in "
            f"provider.{key} free (cluster {self.cluster_name!r}); add hosts to {key} or "
            "terminate nodes"
        )

    def _new_slot(
        self, index: int, node_type: str, host: str, request_id: str,
        tags: Mapping[str, str] | None,
    ) -> SlotRecord:
        all_tags = {
            **(tags or {}),
            TAG_CLUSTER: self.cluster_name,
            TAG_NODE_TYPE: node_type,
            TAG_REQUEST_ID: request_id,
            TAG_HOST: host,
        }
        instance_id = f"onprem-{self.cluster_name}-{index}"
        return SlotRecord(instance_id, node_type, all_tags, SLOT_RUNNING, time.time())

    def _stop_services(self, slot: SlotRecord) -> None:
        command = self.settings.stop_command
        runner = self.command_runner(self._instance(slot))
        try:
            result = runner.run(command, timeout_s=self.settings.stop_timeout_s)
            if result.exit_code != 0:
                log.warning("onprem.stop_failed", instance_id=slot.id, host=slot.tags[TAG_HOST],
                            command=command, exit_code=result.exit_code,
                            output=result.output[-2000:])
        except ProviderError as exc:
            log.warning("onprem.stop_unreachable", instance_id=slot.id,
                        host=slot.tags[TAG_HOST], command=command, error=str(exc))
        finally:
            _close_quietly(runner)

    def _instance(self, slot: SlotRecord) -> Instance:
        host = slot.tags.get(TAG_HOST, "")
        address, _port = split_host_port(host, self.settings.ssh_port)
        head = _is_head(slot)
        external = self.settings.external_head_ip if head and self.settings.external_head_ip else ""
        return Instance(
            id=slot.id,
            node_type=slot.node_type,
            offering=ONPREM_OFFERING,
            state=ProviderState.RUNNING,
            internal_ip=address,
            external_ip=external or address,
            tags=dict(slot.tags),
            launched_at=slot.created_at,
        )


def _is_head(slot: SlotRecord) -> bool:
    return slot.tags.get(TAG_NODE_KIND) == NODE_KIND_HEAD


def _as_dict(auth: Mapping[str, Any] | Any | None) -> dict[str, Any]:
    if auth is None:
        return {}
    if isinstance(auth, Mapping):
        return dict(auth)
    return dict(auth.model_dump(exclude_none=True))


def _close_quietly(runner: SSHRunner) -> None:
    try:
        runner.close()
    except (ProviderError, OSError) as exc:  # the host is released either way
        log.debug("onprem.close_failed", error=str(exc))

"""`LocalProvider`: node slots on this machine. An instance is an id (`local-<cluster>-<n>`) and a
directory `<state root>/<cluster>/nodes/<id>/`; records live in `<state root>/<cluster>/state.json`
so a restarted monitor, or `rayctl down` with the head dead, still finds every slot.

State root: the provider key `state_dir`, else `$RAYCTL_LOCAL_STATE_DIR`, else ~/.rayctl/clusters.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel, ConfigDict, Field

from providers.base import (
    TAG_CLUSTER,
    TAG_NODE_TYPE,
    TAG_REQUEST_ID,
    ConfigError,
    Instance,
    InstanceNotFound,
    Offering,
    ProviderError,
    ProviderState,
)
from providers.local.processes import stop_processes
from providers.local.runner import LocalCommandRunner
from providers.local.state import (
    SLOT_RUNNING,
    SLOT_TERMINATING,
    ProcessRecord,
    SlotRecord,
    StateFile,
)

STATE_DIR_ENV = "RAYCTL_LOCAL_STATE_DIR"
DEFAULT_STATE_ROOT = "~/.rayctl/clusters"
LOCAL_OFFERING = Offering("local")
LOCAL_IP = "127.0.0.1"


class LocalProviderConfig(BaseModel):
    """The `provider:` section for `type: local` (without `type`)."""

    model_config = ConfigDict(extra="forbid")

    state_dir: str | None = None
    terminate_grace_s: float = Field(default=5.0, ge=0)


class LocalNodeConfig(BaseModel):
    """A local slot has nothing to configure: its resources come from `resources`."""

    model_config = ConfigDict(extra="forbid")


def state_root(configured: str | None = None) -> Path:
    chosen = configured or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_ROOT
    return Path(chosen).expanduser().absolute()


class LocalProvider:
    """Slots share this machine; launching one only makes its directory and record."""

    config_model = LocalProviderConfig
    node_config_model = LocalNodeConfig

    def __init__(
        self,
        cluster_name: str,
        provider_config: Mapping[str, Any] | None = None,
        node_types: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        auth: Mapping[str, Any] | None = None,  # local slots need no SSH identity
    ) -> None:
        self.cluster_name = cluster_name
        self.provider_config = dict(provider_config or {})
        self.settings = LocalProviderConfig.model_validate(
            {k: v for k, v in self.provider_config.items() if k != "type"}
        )
        self.node_types = {name: dict(entry) for name, entry in (node_types or {}).items()}
        self.root = state_root(self.settings.state_dir)
        self.cluster_dir = self.root / cluster_name
        self.state = StateFile(self.cluster_dir)

    def slot_dir(self, instance_id: str) -> Path:
        return self.cluster_dir / "nodes" / instance_id

    # --- the provider contract ------------------------------------------------------------

    def bootstrap(self) -> dict[str, Any]:
        (self.cluster_dir / "nodes").mkdir(parents=True, exist_ok=True)
        return {**self.provider_config, "state_dir": str(self.root)}

    def offerings(self, node_type: str) -> list[Offering]:
        self._require_type(node_type)
        return [LOCAL_OFFERING]

    def node_resources(self, node_type: str) -> dict[str, float]:
        """What a runtime started in the slot would detect: this machine's CPUs and memory."""
        self._require_type(node_type)
        return {"CPU": float(os.cpu_count() or 1), "memory": float(psutil.virtual_memory().total)}

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
        """Slots never run out, so all_or_nothing always holds."""
        self._require_type(node_type)
        with self.state.locked() as state:
            existing = [
                s for s in state.slots.values()
                if s.tags.get(TAG_REQUEST_ID) == request_id and s.state == SLOT_RUNNING
            ]
            if existing:
                return [self._instance(s) for s in existing]
            created = []
            for _ in range(max(count, 0)):
                slot = self._new_slot(state.next_index, node_type, request_id, tags)
                state.next_index += 1
                state.slots[slot.id] = slot
                created.append(self._instance(slot))
            return created

    def terminate(self, instance_ids: Sequence[str]) -> None:
        """Stop every process of the slots, then remove their directories and records.
        Marked terminating first, so a runner cannot start anything new meanwhile."""
        ids = list(dict.fromkeys(instance_ids))
        if not ids or not self.cluster_dir.exists():
            return  # nothing was ever launched here (or it was purged): all ids are unknown
        with self.state.locked() as state:
            records: list[ProcessRecord] = []
            for instance_id in ids:
                slot = state.slots.get(instance_id)
                if slot is not None:
                    state.slots[instance_id] = replace(slot, state=SLOT_TERMINATING)
                    records.extend(slot.processes)
        slot_dirs = [self.slot_dir(i) for i in ids if self.slot_dir(i).is_dir()]
        survivors = stop_processes(records, slot_dirs, self.settings.terminate_grace_s)
        if survivors:
            self._reopen(ids)
            raise ProviderError(
                f"could not stop processes {survivors} of local slots {ids}; "
                "kill them by hand, then terminate again"
            )
        for slot_dir in slot_dirs:
            shutil.rmtree(slot_dir, ignore_errors=True)
        with self.state.locked() as state:
            for instance_id in ids:
                state.slots.pop(instance_id, None)

    def list_instances(self) -> list[Instance]:
        """Every slot not yet terminated, from the state file. A slot whose processes all died
        is still listed, and so is one whose terminate was interrupted: it exists until a
        terminate completes (the autoscaler decides what to do)."""
        return [self._instance(s) for s in self.state.read().slots.values()]

    def command_runner(
        self, instance: Instance, node_env: Mapping[str, str] | None = None
    ) -> LocalCommandRunner:
        """`node_env` (RAYCTL_HEAD_ADDRESS, RAYCTL_TOKEN_FILE) is added to every command."""
        return LocalCommandRunner(
            instance.id,
            instance.node_type,
            self.slot_dir(instance.id),
            record_process=lambda process: self._record_process(instance.id, process),
            node_env=node_env,
        )

    def purge(self) -> None:
        """Remove the cluster's state directory; refuses while slots still exist, since their
        records are the only way to find their processes."""
        live = [s.id for s in self.state.read().slots.values()]
        if live:
            raise ProviderError(
                f"cannot purge local cluster {self.cluster_name!r}: slots {live} still exist; "
                "run `rayctl down` first"
            )
        shutil.rmtree(self.cluster_dir, ignore_errors=True)

    def end_machine_command(self, node_type: str) -> str | None:
        # A slot is part of this machine: stop the slot's services (its RAYCTL_TEMP_DIR) only.
        return "rayctl stop"

    # --- internals ------------------------------------------------------------------------

    def _require_type(self, node_type: str) -> None:
        if self.node_types and node_type not in self.node_types:
            known = ", ".join(sorted(self.node_types))
            raise ConfigError(f"unknown node type {node_type!r}; known: {known}")

    def _new_slot(
        self, index: int, node_type: str, request_id: str, tags: Mapping[str, str] | None
    ) -> SlotRecord:
        instance_id = f"local-{self.cluster_name}-{index}"
        (self.slot_dir(instance_id) / "tmp").mkdir(parents=True, exist_ok=True)
        all_tags = {
            **(tags or {}),
            TAG_CLUSTER: self.cluster_name,
            TAG_NODE_TYPE: node_type,
            TAG_REQUEST_ID: request_id,
        }
        return SlotRecord(instance_id, node_type, all_tags, SLOT_RUNNING, time.time())

    def _reopen(self, ids: list[str]) -> None:
        """Undo the terminating mark after a failed terminate, so a retry starts clean."""
        with self.state.locked() as state:
            for instance_id in ids:
                if instance_id in state.slots:
                    state.slots[instance_id] = replace(state.slots[instance_id], state=SLOT_RUNNING)

    def _record_process(self, instance_id: str, process: ProcessRecord) -> None:
        with self.state.locked() as state:
            slot = state.slots.get(instance_id)
            if slot is None or slot.state != SLOT_RUNNING:
                raise InstanceNotFound(
                    f"local slot {instance_id} is terminated or terminating; "
                    "the command was stopped"
                )
            state.slots[instance_id] = slot.with_process(process)

    def _instance(self, slot: SlotRecord) -> Instance:
        return Instance(
            id=slot.id,
            node_type=slot.node_type,
            offering=LOCAL_OFFERING,
            state=ProviderState.RUNNING,
            internal_ip=LOCAL_IP,
            tags=dict(slot.tags),
            launched_at=slot.created_at,
        )

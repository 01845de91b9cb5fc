"""Installing a raylet on an allocated machine, as the autoscaler does for every worker it launches:
the `NodeInstaller` protocol the executor calls, the full one (`ConfigNodeInstaller`, built on the
launcher's `NodeUpdater`) and a start-commands-only one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from providers.base import Instance, NodeProvider, ProviderError

OUTPUT_TAIL_LINES = 20
DEFAULT_COMMAND_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class InstallResult:
    ok: bool
    detail: str = ""  # on failure: the failing command and its last output lines


class NodeInstaller(Protocol):
    """Brings an allocated machine to the point where its raylet registers with the GCS."""

    def install(self, instance: Instance) -> InstallResult: ...


@dataclass(frozen=True, slots=True)
class ConfigNodeInstaller:
    """The full install for every worker the monitor allocates: wait for the node, sync file
    mounts, run initialization and setup commands (skipped when unchanged), then the worker
    start commands, with the node environment. Per-node logs go to `log_dir`."""

    provider: NodeProvider
    config: Any  # autoscaler.config.ClusterConfig
    head_address: str
    token_file: str
    log_dir: str
    resources: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def install(self, instance: Instance) -> InstallResult:
        from autoscaler.launcher.updater import NodeUpdater, node_ip_address, plan_update

        try:
            runner = self.provider.command_runner(instance)
        except ProviderError as exc:
            return InstallResult(False, f"cannot run commands on {instance.id}: {exc}")
        plan = plan_update(self.config, instance.id, instance.node_type, is_head=False,
                           head_address=self.head_address, token_file=self.token_file,
                           node_ip=node_ip_address(runner, instance))
        shape = tuple(sorted(self.resources.get(instance.node_type, {}).items()))
        end_command = self.provider.end_machine_command(instance.node_type) or ""
        plan = replace(plan, resources=shape, end_machine_command=end_command,
                       head_lost_timeout_s=self.config.head_lost_timeout_s)
        # no retries here: a node that fails to install is replaced by the reconciler
        result = NodeUpdater(runner, plan, log_dir=Path(self.log_dir), setup_retries=0).update()
        if result.ok:
            return InstallResult(True)
        tail = "\n".join(result.output_tail)
        where = (f"`{result.failed_command}` exited with {result.exit_code}"
                 if result.failed_command else result.message)
        return InstallResult(False, f"{result.stage}: {where}:\n{tail}".rstrip())

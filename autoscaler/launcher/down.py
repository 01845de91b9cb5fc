"""`rayctl down`: stop the head's services (so its monitor launches nothing more), terminate every
instance of the cluster — workers first, the head last — then list again until none remain or a
deadline passes, and report what was removed and what could not be. Works with the head dead:
the provider's own records (tags, the local state file) say what belongs to the cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from autoscaler.config import ClusterConfig
from autoscaler.launcher.head import (
    LaunchError,
    cluster_instances,
    find_head,
    forget_record,
    head_runner,
    is_local,
    open_provider,
)
from autoscaler.launcher.progress import Progress
from providers.base import Instance, NodeProvider, ProviderError

DEFAULT_DEADLINE_S = 120.0
STOP_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class DownOptions:
    yes: bool = False
    workers_only: bool = False
    keep_min_workers: bool = False
    deadline_s: float = DEFAULT_DEADLINE_S


@dataclass(frozen=True, slots=True)
class Targets:
    workers: tuple[Instance, ...]
    heads: tuple[Instance, ...]  # normally one; leftovers of an interrupted replacement too
    kept: tuple[Instance, ...]

    @property
    def all(self) -> tuple[Instance, ...]:
        return (*self.workers, *self.heads)


@dataclass(frozen=True, slots=True)
class DownResult:
    cluster_name: str
    removed: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]  # (instance id, why)
    kept: tuple[str, ...]
    services: str  # what stopping the head's services did, for the report


# --- decisions (pure) ----------------------------------------------------------------------------


def choose_targets(
    instances: Sequence[Instance], config: ClusterConfig, *, workers_only: bool,
    keep_min_workers: bool,
) -> Targets:
    """Every instance of the cluster, minus the head with --workers-only and, with
    --keep-min-workers, the oldest `min_workers` of each worker type."""
    heads = tuple(i for i in instances if i.is_head)
    workers = sorted((i for i in instances if not i.is_head), key=lambda i: i.launched_at)
    kept: list[Instance] = []
    if keep_min_workers:
        for name, spec in config.available_node_types.items():
            kept += [i for i in workers if i.node_type == name][: spec.min_workers]
    removing = tuple(i for i in workers if i not in kept)
    return Targets(removing, () if workers_only else heads, tuple(kept))


# --- acting -----------------------------------------------------------------------------------------


def down(
    config: ClusterConfig,
    options: DownOptions,
    progress: Progress,
    confirm: Callable[[str], bool] = lambda _: True,
) -> DownResult:
    provider = open_provider(config)
    first = _choose(provider, config, options)
    if not first.all:
        if not options.workers_only:
            forget_record(config.cluster_name)
        return DownResult(config.cluster_name, (), (), tuple(i.id for i in first.kept), "")
    what = "its workers" if options.workers_only else f"all {len(first.all)} instances"
    if not options.yes and not confirm(f"Tear down cluster {config.cluster_name!r} ({what})?"):
        raise LaunchError("aborted: nothing was removed")
    if not is_local(config):
        _bootstrap_quietly(provider, progress)  # a cloud runner needs what bootstrap resolved
    services = ""
    if not options.workers_only:
        services = _stop_services(config, provider, find_head(list(first.heads)), progress)
    # Listed again: the monitor may have launched a worker before its services stopped.
    targets = _choose(provider, config, options)
    failed = dict(_terminate(provider, targets.workers, "workers", progress))
    failed.update(_terminate(provider, targets.heads, "head", progress))
    wanted = {i.id for i in targets.all} - set(failed)
    with progress.step("Waiting until the provider lists none of them"):
        left = _wait_gone(provider, config.cluster_name, wanted, options.deadline_s)
    for instance_id in left:
        failed[instance_id] = f"still listed after {options.deadline_s:.0f} s"
    if not options.workers_only and not failed:
        forget_record(config.cluster_name)
    removed = tuple(i.id for i in targets.all if i.id not in failed)
    return DownResult(config.cluster_name, removed, tuple(sorted(failed.items())),
                      tuple(i.id for i in targets.kept), services)


def _choose(provider: NodeProvider, config: ClusterConfig, options: DownOptions) -> Targets:
    try:
        instances = cluster_instances(provider, config.cluster_name)
    except ProviderError as exc:
        raise LaunchError(f"cannot list the instances of {config.cluster_name!r}: {exc}") from exc
    return choose_targets(instances, config, workers_only=options.workers_only,
                          keep_min_workers=options.keep_min_workers)


def _bootstrap_quietly(provider: NodeProvider, progress: Progress) -> None:
    try:
        provider.bootstrap()
    except ProviderError as exc:
        progress.note(f"provider bootstrap failed ({exc}); terminating without a runner")


def _stop_services(
    config: ClusterConfig, provider: NodeProvider, head: Instance | None, progress: Progress
) -> str:
    """`rayctl stop` on the head. A dead or unreachable head is no reason to stop: its
    instance is terminated all the same."""
    if head is None:
        return "no head to stop"
    try:
        with progress.step(f"Stopping services on head {head.id}"):
            ran = head_runner(config, provider, head).run("rayctl stop", timeout_s=STOP_TIMEOUT_S)
    except ProviderError as exc:
        progress.note(f"could not reach the head ({exc}); terminating it anyway")
        return f"head unreachable: {exc}"
    summary = (ran.output.strip().splitlines() or [""])[-1]
    if ran.exit_code != 0:
        progress.note(f"`rayctl stop` exited {ran.exit_code}: {summary}; terminating anyway")
    return summary


def _terminate(
    provider: NodeProvider, instances: Sequence[Instance], what: str, progress: Progress
) -> list[tuple[str, str]]:
    """Terminate in one call; on an error, one by one so each failure names its instance."""
    if not instances:
        return []
    ids = [i.id for i in instances]
    with progress.step(f"Terminating {what}: {', '.join(ids)}"):
        try:
            provider.terminate(ids)
            return []
        except ProviderError:
            pass
        failed = []
        for instance_id in ids:
            try:
                provider.terminate([instance_id])
            except ProviderError as exc:
                failed.append((instance_id, str(exc)))
        return failed


def _wait_gone(
    provider: NodeProvider, cluster_name: str, ids: set[str], deadline_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> set[str]:
    """Ids still listed when the deadline passes (clouds list terminating VMs for a while)."""
    deadline = time.monotonic() + deadline_s
    delay = 0.05
    while True:
        try:
            left = ids & {i.id for i in cluster_instances(provider, cluster_name)}
        except ProviderError:
            left = set(ids)  # a listing hiccup: ask again until the deadline
        if not left or time.monotonic() >= deadline:
            return left
        sleep(delay)
        delay = min(delay * 2, 2.0)

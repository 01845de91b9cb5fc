"""The executor: the only part of the autoscaler with side effects. Launches and node installs
run on a bounded thread pool (a slow cloud call never stalls the loop); terminate and drain are
synchronous. Drain goes through an injectable `NodeDrainer`; installing goes through a
`NodeUpdater` (the core one runs the node type's start commands through the provider's runner)."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog

from autoscaler.drain import AcceptingDrainer, NodeDrainer
from providers.base import (
    NODE_KIND_WORKER,
    TAG_LAUNCH_HASH,
    TAG_NODE_KIND,
    CapacityError,
    Instance,
    NodeProvider,
    Offering,
    ProviderError,
)

log = structlog.get_logger(__name__)

OUTPUT_TAIL_LINES = 20
DEFAULT_COMMAND_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class UpdateResult:
    ok: bool
    detail: str = ""  # on failure: the failing command and its last output lines


class NodeUpdater(Protocol):
    """Brings an allocated machine to the point where its raylet registers with the GCS."""

    def update(self, instance: Instance) -> UpdateResult: ...


@dataclass(frozen=True, slots=True)
class StartCommandUpdater:
    """Runs the worker start commands through the provider's runner with the node environment
    (file mounts, setup commands and SSH come with the cluster launcher)."""

    provider: NodeProvider
    commands: Sequence[str]
    head_address: str
    token_file: str
    # type -> resources, handed over as RAYCTL_NODE_RESOURCES (JSON) so that the raylet can
    # offer exactly its type's shape (Ray: RAY_OVERRIDE_RESOURCES)
    resources: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S

    def update(self, instance: Instance) -> UpdateResult:
        from autoscaler.launcher.updater import node_ip_address

        runner = self.provider.command_runner(instance)
        env = {
            "RAYCTL_HEAD_ADDRESS": self.head_address,
            "RAYCTL_TOKEN_FILE": self.token_file,
            "RAYCTL_NODE_TYPE": instance.node_type,
            "RAYCTL_INSTANCE_ID": instance.id,
            "RAYCTL_NODE_RESOURCES": json.dumps(dict(self.resources.get(instance.node_type, {}))),
        }
        if node_ip := node_ip_address(runner, instance):
            env["RAYCTL_NODE_IP_ADDRESS"] = node_ip
        try:
            runner.wait_ready(self.timeout_s)
            for command in self.commands:
                result = runner.run(command, env=env, timeout_s=self.timeout_s)
                if result.exit_code != 0:
                    tail = "\n".join(result.output.strip().splitlines()[-OUTPUT_TAIL_LINES:])
                    return UpdateResult(
                        False, f"`{command}` exited with {result.exit_code}:\n{tail}".rstrip()
                    )
        except ProviderError as exc:
            return UpdateResult(False, f"cannot run commands on {instance.id}: {exc}")
        return UpdateResult(True)


@dataclass(frozen=True, slots=True)
class ConfigNodeUpdater:
    """The full node updater for every worker the monitor allocates: wait for the node, sync
    file mounts, run initialization and setup commands (skipped when unchanged), then the
    worker start commands, with the node environment. Per-node logs go to `log_dir`."""

    provider: NodeProvider
    config: Any  # autoscaler.config.ClusterConfig
    head_address: str
    token_file: str
    log_dir: str
    resources: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def update(self, instance: Instance) -> UpdateResult:
        from pathlib import Path

        from autoscaler.launcher.updater import NodeUpdater as FullUpdater
        from autoscaler.launcher.updater import node_ip_address, plan_update

        try:
            runner = self.provider.command_runner(instance)
        except ProviderError as exc:
            return UpdateResult(False, f"cannot run commands on {instance.id}: {exc}")
        plan = plan_update(self.config, instance.id, instance.node_type, is_head=False,
                           head_address=self.head_address, token_file=self.token_file,
                           node_ip=node_ip_address(runner, instance))
        plan = replace(plan, resources=tuple(sorted(self.resources.get(instance.node_type, {}).items())))
        # no retries here: a node that fails to install is replaced by the reconciler
        result = FullUpdater(runner, plan, log_dir=Path(self.log_dir), setup_retries=0).update()
        if result.ok:
            return UpdateResult(True)
        tail = "\n".join(result.output_tail)
        where = f"`{result.failed_command}` exited with {result.exit_code}" if result.failed_command \
            else result.message
        return UpdateResult(False, f"{result.stage}: {where}:\n{tail}".rstrip())


@dataclass(frozen=True, slots=True)
class LaunchResult:
    instances: tuple[Instance, ...] = ()
    capacity_failures: tuple[tuple[Offering, str], ...] = ()
    error: ProviderError | None = None  # the last non-capacity error, if nothing launched
    failed_offering: Offering | None = None  # the offering `error` came from


@dataclass(slots=True)
class Executor:
    provider: NodeProvider
    updater: NodeUpdater
    drainer: NodeDrainer = field(default_factory=AcceptingDrainer)
    max_concurrent_launches: int = 10
    _pool: ThreadPoolExecutor = field(init=False)
    _in_flight: dict[str, Future[None]] = field(init=False, default_factory=dict)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, self.max_concurrent_launches), thread_name_prefix="autoscaler"
        )

    def busy(self, instance_id: str) -> bool:
        """A launch or install for this lifecycle instance is running in this process."""
        with self._lock:
            future = self._in_flight.get(instance_id)
            return future is not None and not future.done()

    def launch(
        self,
        instance_id: str,
        node_type: str,
        offerings: Sequence[Offering],
        request_id: str,
        launch_hash: str,
        on_done: Callable[[LaunchResult], None],
    ) -> bool:
        """Start one instance in the background, trying offerings in order; False if one is
        already running for `instance_id`. The request id makes a resend after a crash safe."""
        tags = {TAG_NODE_KIND: NODE_KIND_WORKER, TAG_LAUNCH_HASH: launch_hash}

        def run() -> None:
            on_done(self._launch(node_type, offerings, request_id, tags))

        return self._submit(instance_id, run)

    def install(
        self, instance_id: str, instance: Instance, on_done: Callable[[UpdateResult], None]
    ) -> bool:
        return self._submit(instance_id, functools.partial(self.install_here, instance, on_done))

    def install_here(self, instance: Instance, on_done: Callable[[UpdateResult], None]) -> None:
        """Run the updater in this thread: a launch job that got a running machine goes straight
        on to install it, instead of waiting for the next monitor round."""
        try:
            result = self.updater.update(instance)
        except Exception as exc:  # an updater bug must fail the node, not the loop
            log.exception("node updater crashed", instance=instance.id)
            result = UpdateResult(False, f"node updater crashed: {exc!r}")
        on_done(result)

    def terminate(self, cloud_ids: Sequence[str]) -> ProviderError | None:
        if not cloud_ids:
            return None
        try:
            self.provider.terminate(list(cloud_ids))
        except ProviderError as exc:
            log.warning("terminate failed", instances=list(cloud_ids), error=str(exc))
            return exc
        return None

    def drain(self, node_id: str, reason: str) -> bool:
        try:
            return self.drainer.request_drain(node_id, reason=reason, idle_only=False).accepted
        except Exception:
            log.exception("drain call failed; keeping the node", node_id=node_id)
            return False

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Block until every background launch/install has finished (tests, shutdown)."""
        with self._lock:
            futures = list(self._in_flight.values())
        done, pending = wait(futures, timeout=timeout_s)
        if pending:
            raise TimeoutError(f"{len(pending)} launches/installs still running after {timeout_s}s")

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- internals ---------------------------------------------------------------------------

    def _submit(self, instance_id: str, fn: Callable[[], None]) -> bool:
        with self._lock:
            current = self._in_flight.get(instance_id)
            if current is not None and not current.done():
                return False
            self._in_flight[instance_id] = self._pool.submit(_logged, fn, instance_id)
            done = [k for k, f in self._in_flight.items() if f.done()]
            for key in done:
                del self._in_flight[key]
        return True

    def _launch(
        self,
        node_type: str,
        offerings: Sequence[Offering],
        request_id: str,
        tags: Mapping[str, str],
    ) -> LaunchResult:
        failures: list[tuple[Offering, str]] = []
        error: ProviderError | None = None
        failed: Offering | None = None
        for offering in offerings:
            try:
                found = self.provider.launch(
                    node_type, offering, 1, request_id, tags=tags, all_or_nothing=True
                )
                return LaunchResult(tuple(found), tuple(failures))
            except CapacityError as exc:
                failures.append((exc.offering, str(exc)))
            except ProviderError as exc:
                error, failed = exc, offering
                break  # quota, auth, config or transient: another offering will not help now
        return LaunchResult((), tuple(failures), error, failed)


def _logged(fn: Callable[[], None], instance_id: str) -> None:
    try:
        fn()
    except Exception:
        log.exception("background autoscaler work failed", instance_id=instance_id)

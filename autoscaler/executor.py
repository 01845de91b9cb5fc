"""The executor: the only part of the autoscaler with side effects. Launches (batches and gangs,
through the failover loop) and installs run on a bounded thread pool, drains on a pool of their
own, so a slow cloud, a slow install or a GCS in trouble never stalls the loop; terminate is one
synchronous call. Each job runs under a key (a request id, a gang, an instance id), and a key
runs at most one job at a time: `busy(key)` tells the reconciler what is in flight here."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import structlog

from autoscaler.drain import AcceptingDrainer, DrainAnswer, NodeDrainer
from autoscaler.failover import CapacityFailureHook, GangOutcome, LaunchRequest, launch_gang
from autoscaler.installer import InstallResult, NodeInstaller
from providers.base import Instance, NodeProvider, ProviderError

log = structlog.get_logger(__name__)

# A drain request answers at once; a few in parallel cover a GCS that is slow to answer.
DEFAULT_CONCURRENT_DRAINS = 4


@dataclass(slots=True)
class Executor:
    provider: NodeProvider
    installer: NodeInstaller
    drainer: NodeDrainer = field(default_factory=AcceptingDrainer)
    max_concurrent_launches: int = 10
    max_concurrent_drains: int = DEFAULT_CONCURRENT_DRAINS
    # Called after every job (from its thread): the monitor's next round need not wait for
    # its tick to see what the job changed (an accepted drain, a launched batch).
    on_job_done: Callable[[], None] | None = None
    _pool: ThreadPoolExecutor = field(init=False)
    _drain_pool: ThreadPoolExecutor = field(init=False)
    _in_flight: dict[str, Future[None]] = field(init=False, default_factory=dict)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, self.max_concurrent_launches), thread_name_prefix="autoscaler"
        )
        self._drain_pool = ThreadPoolExecutor(
            max_workers=max(1, self.max_concurrent_drains), thread_name_prefix="autoscaler-drain"
        )

    def busy(self, key: str) -> bool:
        """A job under `key` is running in this process."""
        with self._lock:
            future = self._in_flight.get(key)
            return future is not None and not future.done()

    def launch(
        self,
        key: str,
        requests: Sequence[LaunchRequest],
        on_done: Callable[[GangOutcome], None],
        on_capacity: CapacityFailureHook | None = None,
    ) -> bool:
        """Launch `requests` in order in the background (see failover.launch_gang); False if a
        job under `key` is already running. Their request ids make a resend after a crash safe."""

        def run() -> None:
            on_done(launch_gang(self.provider, requests, on_capacity))

        return self._submit(self._pool, key, run)

    def install(
        self, key: str, instance: Instance, on_done: Callable[[InstallResult], None]
    ) -> bool:
        return self._submit(self._pool, key, functools.partial(self._install, instance, on_done))

    def drain(
        self,
        key: str,
        node_id: str,
        *,
        reason: str,
        idle_only: bool,
        on_done: Callable[[DrainAnswer], None],
    ) -> bool:
        """Ask the GCS to drain the node, in the background; `on_done` gets its answer."""

        def run() -> None:
            try:
                answer = self.drainer.request_drain(node_id, reason=reason, idle_only=idle_only)
            except Exception as exc:  # a drainer bug must keep the node, not kill the job
                log.exception("drain call failed; keeping the node", node_id=node_id)
                answer = DrainAnswer(False, f"the drain call failed: {exc!r}")
            on_done(answer)

        return self._submit(self._drain_pool, key, run)

    def terminate(self, cloud_ids: Sequence[str]) -> ProviderError | None:
        if not cloud_ids:
            return None
        try:
            self.provider.terminate(list(cloud_ids))
        except ProviderError as exc:
            log.warning("terminate failed", instances=list(cloud_ids), error=str(exc))
            return exc
        return None

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Block until every background job has finished, including the jobs finished jobs
        started (a launch goes on to installs). For tests and shutdown."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                futures = [f for f in self._in_flight.values() if not f.done()]
            if not futures:
                return
            _, pending = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
            if pending:
                raise TimeoutError(
                    f"{len(pending)} background jobs still running after {timeout_s}s"
                )

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._drain_pool.shutdown(wait=False, cancel_futures=True)

    # --- internals ---------------------------------------------------------------------------

    def _install(self, instance: Instance, on_done: Callable[[InstallResult], None]) -> None:
        try:
            result = self.installer.install(instance)
        except Exception as exc:  # an installer bug must fail the node, not the loop
            log.exception("node installer crashed", instance=instance.id)
            result = InstallResult(False, f"node installer crashed: {exc!r}")
        on_done(result)

    def _submit(self, pool: ThreadPoolExecutor, key: str, fn: Callable[[], None]) -> bool:
        with self._lock:
            current = self._in_flight.get(key)
            if current is not None and not current.done():
                return False
            for done in [k for k, f in self._in_flight.items() if f.done()]:
                del self._in_flight[done]
            self._in_flight[key] = pool.submit(self._run, fn, key)
        return True

    def _run(self, fn: Callable[[], None], key: str) -> None:
        try:
            fn()
        except Exception:
            log.exception("background autoscaler work failed", key=key)
        finally:
            if self.on_job_done is not None:
                self.on_job_done()

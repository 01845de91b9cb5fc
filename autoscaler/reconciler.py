"""The reconciler: moves instance records through the lifecycle in two phases per round.

  sync  (passive) what the provider lists and the GCS reports: ALLOCATED when an instance of a
        record's request shows up, RAYLET_RUNNING when a GCS node carries its id, TERMINATING
        when a drained node is done, TERMINATED when it is gone, timeouts from the history.
  step  (active)  apply the plan through the executor: drains (asked in the background),
        launches (provisioner.py: batches and gangs), installs, terminates, leaked instances.

Every write is compare-and-set on the status read (lifecycle_writer.py), so a restarted (or
second) monitor never applies a transition twice. Nothing here waits on the cloud or the GCS:
launches, installs and drains run in the executor, which calls back.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from autoscaler.decisions import Decision, DecisionAction, FailureCause
from autoscaler.drain import DrainAnswer
from autoscaler.executor import Executor
from autoscaler.installer import InstallResult
from autoscaler.lifecycle import InstanceRecord, InstanceStatus, timed_out
from autoscaler.lifecycle_store import LifecycleStore
from autoscaler.lifecycle_writer import LifecycleWriter
from autoscaler.model import DrainAction, Plan, ScalingConfig, TerminationCause
from autoscaler.observe import GcsNode, GcsView, Observation
from autoscaler.provisioner import Provisioner, launch_key
from autoscaler.settings import Settings
from providers.base import TAG_REQUEST_ID, Instance, NodeProvider, ProviderState

__all__ = ["Reconciler", "Settings"]

log = structlog.get_logger(__name__)
S = InstanceStatus
T = TerminationCause

# Provider states that mean "deliberately stopped" (a cached node): never a leak.
STOPPED_STATES = frozenset({ProviderState.STOPPED, ProviderState.STOPPING})


@dataclass(slots=True)
class _World:
    """What this round saw, indexed."""

    gcs: GcsView
    by_cloud_id: dict[str, Instance]
    by_request_id: dict[str, list[Instance]]

    @classmethod
    def of(cls, obs: Observation) -> _World:
        by_request: dict[str, list[Instance]] = {}
        for instance in obs.instances:
            if TAG_REQUEST_ID in instance.tags:
                by_request.setdefault(instance.tags[TAG_REQUEST_ID], []).append(instance)
        return cls(obs.gcs, {i.id: i for i in obs.instances}, by_request)


def _drain_key(rec: InstanceRecord) -> str:
    return f"drain/{rec.instance_id}"


class Reconciler:
    def __init__(
        self,
        store: LifecycleStore,
        provider: NodeProvider,
        executor: Executor,
        config: ScalingConfig,
        clock: Callable[[], float],
        settings: Settings | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.executor = executor
        self.config = config
        self.clock = clock
        self.settings = settings or Settings()
        self.writer = LifecycleWriter(store, clock)
        self._terminate_sent: dict[str, float] = {}
        self._installs_started: set[str] = set()  # by this process (not a previous monitor)
        self._started_at = clock()
        self.provisioner = Provisioner(
            store, self.writer, provider, executor, config, clock, self.settings,
            start_install=self._start_install, terminate_sent=self._note_terminate_sent,
        )

    def take_decisions(self) -> list[Decision]:
        """What was decided since the last call (the monitor stores them each round)."""
        return self.writer.take_decisions()

    # --- phase 1: sync ---------------------------------------------------------------------

    def sync(self, obs: Observation) -> None:
        world = _World.of(obs)
        self.provisioner.match_listed(self.store.all(), world.by_request_id)
        for record in self.store.all():
            if record.status is not S.TERMINATED:
                self._sync_one(record, world)

    def _sync_one(self, rec: InstanceRecord, world: _World) -> None:
        status = rec.status
        if status is S.QUEUED:
            return
        if status in (S.REQUESTED, S.ALLOCATION_FAILED):
            self._sync_unallocated(rec)
            return
        if rec.cloud_instance_id not in world.by_cloud_id:
            self._gone(rec)
        elif status in (S.ALLOCATED, S.RAYLET_INSTALLING):
            self._sync_installing(rec, world)
        elif status is S.RAYLET_INSTALL_FAILED:
            self._terminate(rec, "a half-installed machine is released", T.INSTALL_FAILED)
        elif status is S.RAYLET_RUNNING:
            dead = world.gcs.dead_node_of(rec.cloud_instance_id)
            if dead is not None and world.gcs.alive_node_of(rec.cloud_instance_id) is None:
                self._terminate(rec, f"its node {dead.node_id} died", T.RAYLET_DIED)
        elif status is S.RAYLET_DRAINING:
            self._sync_draining(rec, world)
        elif status is S.TERMINATING and timed_out(rec, self.clock(), self.settings.timeouts):
            self.writer.move(
                rec, S.TERMINATION_FAILED,
                f"still listed {self.settings.timeouts.terminate_s:g} s after terminate",
                action=DecisionAction.TERMINATION_FAILED, cause=FailureCause.TERMINATE_TIMEOUT,
            )

    def _sync_unallocated(self, rec: InstanceRecord) -> None:
        timeouts = self.settings.timeouts
        if rec.status is S.REQUESTED and timed_out(rec, self.clock(), timeouts):
            self.writer.move(
                rec, S.ALLOCATION_FAILED, f"no instance after {timeouts.launch_s:g} s",
                action=DecisionAction.ALLOCATION_FAILED, cause=FailureCause.ALLOCATION_TIMEOUT,
            )
        elif rec.status is S.ALLOCATION_FAILED and not self.executor.busy(launch_key(rec)):
            self.writer.move(rec, S.TERMINATED, "launch given up; the planner asks again if needed")

    def _gone(self, rec: InstanceRecord) -> None:
        if rec.status in (S.TERMINATING, S.TERMINATION_FAILED):
            self.writer.move(rec, S.TERMINATED, "terminated")
            return
        self.writer.move(
            rec, S.TERMINATED, "the provider no longer lists it (preempted or deleted)",
            action=DecisionAction.TERMINATE, cause=T.PREEMPTED,
        )

    def _sync_installing(self, rec: InstanceRecord, world: _World) -> None:
        now, timeouts = self.clock(), self.settings.timeouts
        node = world.gcs.alive_node_of(rec.cloud_instance_id)
        if node is not None:
            if rec.status is S.ALLOCATED:  # started by hand or by a previous monitor's installer
                moved = self.writer.move(rec, S.RAYLET_INSTALLING, "its raylet registered first")
                rec = moved or rec
            self.writer.move(rec, S.RAYLET_RUNNING, f"node {node.node_id} registered with the GCS")
        elif (why := self._orphaned_install(rec, now)) is not None:
            self.writer.move(
                rec, S.RAYLET_INSTALL_FAILED, why,
                action=DecisionAction.RAYLET_INSTALL_FAILED, cause=FailureCause.INSTALL_ORPHANED,
            )
        elif timed_out(rec, now, timeouts) and not self.executor.busy(rec.instance_id):
            allowed = timeouts.install_s
            if rec.status is S.RAYLET_INSTALLING:
                self.writer.move(
                    rec, S.RAYLET_INSTALL_FAILED, f"no raylet registered within {allowed:g} s",
                    action=DecisionAction.RAYLET_INSTALL_FAILED,
                    cause=FailureCause.INSTALL_TIMEOUT,
                )
            else:
                self._terminate(rec, f"never became ready within {allowed:g} s", T.NEVER_READY)

    def _orphaned_install(self, rec: InstanceRecord, now: float) -> str | None:
        """Why an install a previous monitor started is given up, or None. Installs run in
        the monitor's threads: one whose start commands never returned died with it (failed at
        once: nobody runs it, and re-running them could start a second raylet); one whose
        commands returned gets the grace for its raylet to register."""
        if rec.status is not S.RAYLET_INSTALLING or rec.instance_id in self._installs_started:
            return None
        if not rec.install_finished_at:
            return "its install died with the previous monitor before its start commands returned"
        grace = self.settings.orphan_install_grace_s
        if now - max(self._started_at, rec.install_finished_at) <= grace:
            return None
        return (f"its install died with the previous monitor "
                f"and no raylet registered {grace:g} s after the restart")

    def _sync_draining(self, rec: InstanceRecord, world: _World) -> None:
        """Terminate once the GCS reports the node drained (or it died, or is gone), or when
        the drain timeout passes — the drain itself runs in the GCS, never here."""
        node = world.gcs.alive_node_of(rec.cloud_instance_id)
        timeouts = self.settings.timeouts
        if node is None:
            self._terminate(rec, "its node died or left while draining", T.RAYLET_DIED)
        elif not self.executor.busy(_drain_key(rec)) and _drain_finished(node):
            self._terminate(rec, "drained", T.DRAINED)
        elif timed_out(rec, self.clock(), timeouts):
            holders = node.drain.holders() if node.drain is not None else "unknown"
            self._terminate(
                rec, f"drain did not finish in {timeouts.drain_s:g} s (held by: {holders})",
                T.DRAIN_TIMEOUT,
            )

    # --- phase 2: step ---------------------------------------------------------------------

    def step(self, plan: Plan, obs: Observation) -> None:
        world = _World.of(obs)
        self._apply_terminates(plan)
        self._apply_drains(plan)
        self.provisioner.queue(plan)
        self.provisioner.dispatch(self.store.all())
        for rec in self.store.all():
            if rec.status is S.ALLOCATED:
                self._install(rec, world)
            elif rec.status is S.TERMINATION_FAILED:
                self.writer.move(rec, S.TERMINATING, "retrying the terminate")
        self._terminate_pending()
        self._terminate_leaks(world)
        self._prune()

    def _install(self, rec: InstanceRecord, world: _World) -> None:
        instance = world.by_cloud_id.get(rec.cloud_instance_id)
        if instance is None or instance.state is not ProviderState.RUNNING:
            return  # still booting: the provider's PENDING
        if not self.executor.busy(rec.instance_id):
            self._start_install(rec, instance)

    def _start_install(self, rec: InstanceRecord, instance: Instance) -> None:
        moved = self.writer.move(rec, S.RAYLET_INSTALLING, "running the start commands")
        if moved is not None:
            self._installs_started.add(rec.instance_id)
            on_done = functools.partial(self._installed, moved)
            self.executor.install(rec.instance_id, instance, on_done)

    def _installed(self, rec: InstanceRecord, result: InstallResult) -> None:
        if not result.ok:
            self.writer.move(
                rec, S.RAYLET_INSTALL_FAILED, result.detail,
                action=DecisionAction.RAYLET_INSTALL_FAILED,
                cause=FailureCause.INSTALL_COMMAND_FAILED,
            )
        else:  # it stays RAYLET_INSTALLING until its raylet registers (sync)
            self.writer.note_install_finished(rec)

    def _apply_terminates(self, plan: Plan) -> None:
        for action in plan.terminates:
            rec = self.store.get(action.instance_id)
            if rec is None:
                continue
            target = S.TERMINATED if rec.status is S.QUEUED else S.TERMINATING
            self.writer.move(
                rec, target, action.reason, action=DecisionAction.TERMINATE, cause=action.cause
            )

    def _apply_drains(self, plan: Plan) -> None:
        """RAYLET_DRAINING at once; the GCS is asked in the background (its answer comes back
        through `_drain_answered`), so a slow GCS never delays this round's launches."""
        for action in plan.drains:
            rec = self.store.get(action.instance_id) if action.instance_id else None
            if rec is None or rec.status is not S.RAYLET_RUNNING:
                continue
            draining = self.writer.move(
                rec, S.RAYLET_DRAINING, action.reason,
                action=DecisionAction.DRAIN, cause=action.cause,
            )
            if draining is not None:
                self.executor.drain(
                    _drain_key(rec), action.node_id, reason=action.reason,
                    idle_only=action.idle_only,
                    on_done=functools.partial(self._drain_answered, draining, action),
                )

    def _drain_answered(
        self, rec: InstanceRecord, action: DrainAction, answer: DrainAnswer
    ) -> None:
        if answer.accepted:
            log.info("drain accepted", instance_id=rec.instance_id, node_id=action.node_id)
            return  # it stays RAYLET_DRAINING until the GCS reports it drained (sync)
        self.writer.move(
            rec, S.RAYLET_RUNNING,
            f"the GCS rejected the drain: {answer.reason or 'no reason given'}",
            action=DecisionAction.DRAIN_REJECTED, cause=action.cause,
        )

    def _terminate(self, rec: InstanceRecord, reason: str, cause: TerminationCause) -> None:
        self.writer.move(rec, S.TERMINATING, reason, action=DecisionAction.TERMINATE, cause=cause)

    def _note_terminate_sent(self, instance_id: str) -> None:
        self._terminate_sent[instance_id] = self.clock()

    def _terminate_pending(self) -> None:
        now = self.clock()
        due = [
            r
            for r in self.store.all()
            if r.status is S.TERMINATING
            and r.cloud_instance_id
            and now - self._terminate_sent.get(r.instance_id, -1e18)
            >= self.settings.terminate_resend_s
        ]
        if not due:
            return
        error = self.executor.terminate([r.cloud_instance_id for r in due])
        for rec in due:
            self._terminate_sent[rec.instance_id] = now
            if error is not None:
                self.writer.move(
                    rec, S.TERMINATION_FAILED, f"terminate failed: {error}",
                    action=DecisionAction.TERMINATION_FAILED, cause=FailureCause.TERMINATE_ERROR,
                )

    def _terminate_leaks(self, world: _World) -> None:
        """Instances of this cluster the lifecycle does not know, after a grace period (a
        launch in flight is known by its request id, so the grace only covers clock skew and
        listing lag). Never the head, never a stopped (cached) node. A request id protects
        its instances only while a record of it still waits for one: past that, an instance
        under it that no record owns is a twin (the same batch launched again, e.g. by the next
        offering after a crash) and is a leak."""
        now = self.clock()
        known_cloud, known_requests = set(), set()
        for rec in self.store.all():
            if rec.status is not S.TERMINATED:
                known_cloud.add(rec.cloud_instance_id)
                if not rec.cloud_instance_id:
                    known_requests.add(rec.request_id)
        leaks = [
            i
            for i in world.by_cloud_id.values()
            if not i.is_head
            and i.state not in STOPPED_STATES
            and i.id not in known_cloud
            and i.tags.get(TAG_REQUEST_ID) not in known_requests
            and now - i.launched_at > self.settings.leak_grace_s
        ]
        if not leaks:
            return
        reason = f"leaked: unknown to the lifecycle for over {self.settings.leak_grace_s:g} s"
        for instance in leaks:
            self.writer.decide(
                DecisionAction.TERMINATE, T.LEAKED, instance.id, instance.node_type, reason
            )
        self.executor.terminate([i.id for i in leaks])

    def _prune(self) -> None:
        cutoff = self.clock() - self.settings.keep_terminated_s
        old = [
            r.instance_id for r in self.store.all() if r.status is S.TERMINATED and r.since < cutoff
        ]
        self.store.delete(old)
        live = {r.instance_id for r in self.store.all() if r.status is not S.TERMINATED}
        # Launch jobs note rollback terminates from their threads: iterate a copy (one C call).
        # A note that lands in between is lost, which costs one harmless resend after 30 s.
        sent = dict(self._terminate_sent)
        self._terminate_sent = {k: v for k, v in sent.items() if k in live}
        self._installs_started &= live


def _drain_finished(node: GcsNode) -> bool:
    """Whether the GCS reports nothing holds the draining node any more (asked only after its
    answer to the drain request came back)."""
    return node.drain is not None and node.drain.drained

"""The reconciler: moves instance records through the lifecycle in two phases per round.

  sync  (passive) what the provider lists and the GCS reports: ALLOCATED when the instance shows
        up, RUNNING when a GCS node carries its id, TERMINATED when it is gone, timeouts from
        the history (LAUNCH_FAILED, INSTALL_FAILED, TERMINATE_FAILED).
  step  (active)  apply the plan through the executor: QUEUED -> REQUESTED (launch with a request
        id), ALLOCATED -> INSTALLING (node updater), drain -> terminate, leaked instances.

Every write is compare-and-set on the status read, so a restarted (or second) monitor never
applies a transition twice; a REQUESTED record with no launch running here is resent with the
same request id, which the provider answers with the instance it already made, if any.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from autoscaler.executor import Executor, LaunchResult, UpdateResult
from autoscaler.lifecycle import (
    IllegalTransition,
    InstanceRecord,
    InstanceStatus,
    StaleRecord,
    Timeouts,
    new_instance,
    timed_out,
    transition,
)
from autoscaler.lifecycle_store import OfferingMark, RedisLifecycleStore
from autoscaler.model import Plan, ScalingConfig
from autoscaler.observe import GcsView, Observation
from providers.base import (
    TAG_REQUEST_ID,
    Instance,
    NodeProvider,
    Offering,
    ProviderState,
    QuotaError,
    TransientError,
)

log = structlog.get_logger(__name__)
S = InstanceStatus

# Provider states that mean "deliberately stopped" (a cached node): never a leak.
STOPPED_STATES = frozenset({ProviderState.STOPPED, ProviderState.STOPPING})


@dataclass(frozen=True, slots=True)
class Settings:
    timeouts: Timeouts = field(default_factory=Timeouts)
    leak_grace_s: float = 300.0  # an unknown instance younger than this may be a launch in flight
    capacity_backoff_s: float = 300.0  # how long a CapacityError keeps an offering unused
    quota_backoff_s: float = 600.0
    terminate_resend_s: float = 30.0
    keep_terminated_s: float = 3600.0  # history kept for `rayctl status -v`
    transient_backoff_s: float = 30.0  # throttling / 5xx: leave that offering alone a while
    # An install a previous monitor started died with it: its raylet gets this long to register
    # after a restart, then the machine is replaced (re-running start commands could start a
    # second raylet on it).
    orphan_install_grace_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Decision:
    """One thing the autoscaler did, with why: written to Redis for `rayctl status`."""

    at: float
    action: str
    target: str
    node_type: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "action": self.action,
            "target": self.target,
            "node_type": self.node_type,
            "reason": self.reason,
        }


@dataclass(slots=True)
class _World:
    """What this round saw, indexed."""

    gcs: GcsView
    by_cloud_id: dict[str, Instance]
    by_request_id: dict[str, Instance]

    @classmethod
    def of(cls, obs: Observation) -> _World:
        by_request = {i.tags[TAG_REQUEST_ID]: i for i in obs.instances if TAG_REQUEST_ID in i.tags}
        return cls(obs.gcs, {i.id: i for i in obs.instances}, by_request)

    def instance_of(self, record: InstanceRecord) -> Instance | None:
        if record.cloud_instance_id:
            return self.by_cloud_id.get(record.cloud_instance_id)
        return self.by_request_id.get(record.request_id) if record.request_id else None


class Reconciler:
    def __init__(
        self,
        store: RedisLifecycleStore,
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
        self.decisions: list[Decision] = []  # drained by the monitor each round
        self._terminate_sent: dict[str, float] = {}
        self._installs_started: set[str] = set()  # by this process (not a previous monitor)
        self._started_at = clock()

    # --- phase 1: sync ---------------------------------------------------------------------

    def sync(self, obs: Observation) -> None:
        world = _World.of(obs)
        for record in self.store.all():
            if record.status != S.TERMINATED:
                self._sync_one(record, world)

    def _sync_one(self, rec: InstanceRecord, world: _World) -> None:
        now, t = self.clock(), self.settings.timeouts
        instance = world.instance_of(rec)
        status = rec.status
        if status in (S.QUEUED,):
            return
        if status in (S.REQUESTED, S.LAUNCH_FAILED):
            if instance is not None:
                self._move(
                    rec,
                    S.ALLOCATED,
                    f"the provider lists {instance.id}",
                    cloud_instance_id=instance.id,
                )
            elif status == S.REQUESTED and timed_out(rec, now, t):
                self._move(rec, S.LAUNCH_FAILED, f"no instance after {t.launch_s:g} s")
            elif status == S.LAUNCH_FAILED and not self.executor.busy(rec.instance_id):
                self._move(rec, S.TERMINATED, "launch given up; the planner asks again if needed")
            return
        if instance is None:
            self._move(rec, S.TERMINATED, _gone_reason(status))
            return
        if status in (S.ALLOCATED, S.INSTALLING):
            self._sync_installing(rec, world, now)
        elif status == S.INSTALL_FAILED:
            self._move(rec, S.TERMINATING, "a half-installed machine is released")
        elif status == S.RUNNING:
            dead = world.gcs.dead_node_of(rec.cloud_instance_id)
            if dead is not None and world.gcs.alive_node_of(rec.cloud_instance_id) is None:
                self._move(rec, S.TERMINATING, f"its node {dead.node_id} died")
        elif status == S.DRAINING and timed_out(rec, now, t):
            self._move(rec, S.TERMINATING, f"drain did not finish in {t.drain_s:g} s")
        elif status == S.TERMINATING and timed_out(rec, now, t):
            self._move(rec, S.TERMINATE_FAILED, f"still listed {t.terminate_s:g} s after terminate")

    def _sync_installing(self, rec: InstanceRecord, world: _World, now: float) -> None:
        node = world.gcs.alive_node_of(rec.cloud_instance_id)
        if node is not None:
            if rec.status == S.ALLOCATED:  # started by hand or by a previous monitor's updater
                moved = self._move(rec, S.INSTALLING, "its raylet registered before install")
                rec = moved or rec
            self._move(rec, S.RUNNING, f"node {node.node_id} registered with the GCS")
        elif self._orphaned_install(rec, now):
            grace = self.settings.orphan_install_grace_s
            self._move(
                rec,
                S.INSTALL_FAILED,
                f"its install died with the previous monitor "
                f"and no raylet registered {grace:g} s after the restart",
            )
        elif timed_out(rec, now, self.settings.timeouts) and not self.executor.busy(
            rec.instance_id
        ):
            allowed = self.settings.timeouts.install_s
            if rec.status == S.INSTALLING:
                self._move(rec, S.INSTALL_FAILED, f"no raylet registered within {allowed:g} s")
            else:
                self._move(rec, S.TERMINATING, f"never became ready within {allowed:g} s")

    def _orphaned_install(self, rec: InstanceRecord, now: float) -> bool:
        return (
            rec.status == S.INSTALLING
            and rec.instance_id not in self._installs_started
            and now - self._started_at > self.settings.orphan_install_grace_s
        )

    # --- phase 2: step ---------------------------------------------------------------------

    def step(self, plan: Plan, obs: Observation) -> None:
        world = _World.of(obs)
        self._apply_terminates(plan)
        self._apply_drains(plan)
        self._queue_launches(plan)
        marked = {m.key for m in self.store.unavailable(self.clock())}
        for rec in self.store.all():
            if rec.status in (S.QUEUED, S.REQUESTED):
                self._launch(rec, marked)
            elif rec.status == S.ALLOCATED:
                self._install(rec, world)
            elif rec.status == S.TERMINATE_FAILED:
                self._move(rec, S.TERMINATING, "retrying the terminate")
        self._terminate_pending()
        self._terminate_leaks(world)
        self._prune()

    def _queue_launches(self, plan: Plan) -> None:
        now = self.clock()
        for action in plan.launches:
            spec = self.config.node_types.get(action.node_type)
            launch_hash = spec.launch_config_hash if spec is not None else ""
            for _ in range(action.count):
                instance_id = f"i-{uuid.uuid4().hex[:12]}"
                rec = new_instance(instance_id, action.node_type, now, action.reason, launch_hash)
                self.store.put(rec, expected=None)
                self._decide("launch", instance_id, action.node_type, action.reason)

    def _launch(self, rec: InstanceRecord, marked: set[str]) -> None:
        if self.executor.busy(rec.instance_id):
            return
        offerings = self._usable_offerings(rec.node_type, marked)
        if rec.status == S.QUEUED:
            if not offerings:
                self._move(rec, S.TERMINATED, f"every offering of {rec.node_type} is unavailable")
                return
            moved = self._move(rec, S.REQUESTED, "launch sent", request_id=rec.instance_id)
            if moved is None:
                return
            rec = moved
        else:
            # REQUESTED with nothing running here: a previous monitor died mid-launch. The
            # same request id returns what that launch made instead of launching again.
            offerings = offerings or self.provider.offerings(rec.node_type)
        self.executor.launch(
            rec.instance_id,
            rec.node_type,
            offerings,
            rec.request_id,
            rec.launch_config_hash,
            functools.partial(self._launched, rec),
        )

    def _launched(self, rec: InstanceRecord, result: LaunchResult) -> None:
        now = self.clock()
        for offering, reason in result.capacity_failures:
            until = now + self.settings.capacity_backoff_s
            self.store.mark_unavailable(OfferingMark(offering.key(), rec.node_type, until, reason))
        if result.instances:
            instance = result.instances[0]
            allocated = self._move(rec, S.ALLOCATED, f"launched {instance.id}", cloud_instance_id=instance.id)
            if allocated is not None and instance.state == ProviderState.RUNNING:
                # already up (a local slot, a fast VM): install now, in this launch job
                installing = self._move(allocated, S.INSTALLING, "running the start commands")
                if installing is not None:
                    self._installs_started.add(rec.instance_id)
                    self.executor.install_here(instance, functools.partial(self._installed, installing))
            return
        if isinstance(result.error, TransientError) and result.failed_offering is not None:
            until = now + self.settings.transient_backoff_s
            key = result.failed_offering.key()
            self.store.mark_unavailable(OfferingMark(key, rec.node_type, until, str(result.error)))
        if isinstance(result.error, QuotaError):
            until = now + self.settings.quota_backoff_s
            key = f"type:{rec.node_type}"
            self.store.mark_unavailable(OfferingMark(key, rec.node_type, until, str(result.error)))
        reasons = [r for _, r in result.capacity_failures]
        if result.error is not None:
            reasons.append(str(result.error))
        self._move(rec, S.LAUNCH_FAILED, "; ".join(reasons) or "the provider returned nothing")

    def _usable_offerings(self, node_type: str, marked: set[str]) -> list[Offering]:
        if f"type:{node_type}" in marked:
            return []
        return [o for o in self.provider.offerings(node_type) if o.key() not in marked]

    def _install(self, rec: InstanceRecord, world: _World) -> None:
        instance = world.instance_of(rec)
        if instance is None or instance.state != ProviderState.RUNNING:
            return  # still booting: the provider's PENDING
        if self.executor.busy(rec.instance_id):
            return
        moved = self._move(rec, S.INSTALLING, "running the start commands")
        if moved is not None:
            self._installs_started.add(rec.instance_id)
            self.executor.install(
                rec.instance_id, instance, functools.partial(self._installed, moved)
            )

    def _installed(self, rec: InstanceRecord, result: UpdateResult) -> None:
        if not result.ok:
            self._move(rec, S.INSTALL_FAILED, result.detail)
        # on success the record stays INSTALLING until its raylet registers (sync -> RUNNING)

    def _apply_terminates(self, plan: Plan) -> None:
        for action in plan.terminates:
            rec = self.store.get(action.instance_id)
            if rec is None:
                continue
            target = S.TERMINATED if rec.status == S.QUEUED else S.TERMINATING
            if self._move(rec, target, action.reason) is not None:
                self._decide("terminate", rec.instance_id, rec.node_type, action.reason)

    def _apply_drains(self, plan: Plan) -> None:
        for action in plan.drains:
            rec = self.store.get(action.instance_id) if action.instance_id else None
            if rec is None or rec.status != S.RUNNING:
                continue
            draining = self._move(rec, S.DRAINING, action.reason)
            if draining is None:
                continue
            self._decide("drain", rec.instance_id, rec.node_type, action.reason)
            if self.executor.drain(action.node_id, action.reason):
                self._move(draining, S.TERMINATING, "drained")
            else:
                self._move(draining, S.RUNNING, "the GCS refused the drain: work arrived")

    def _terminate_pending(self) -> None:
        now = self.clock()
        due = [
            r
            for r in self.store.all()
            if r.status == S.TERMINATING
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
                self._move(rec, S.TERMINATE_FAILED, f"terminate failed: {error}")

    def _terminate_leaks(self, world: _World) -> None:
        """Instances of this cluster the lifecycle does not know, after a grace period (a
        launch in flight is known by its request id, so the grace only covers clock skew and
        listing lag). Never the head, never a stopped (cached) node."""
        now = self.clock()
        known_cloud, known_requests = set(), set()
        for rec in self.store.all():
            if rec.status != S.TERMINATED:
                known_cloud.add(rec.cloud_instance_id)
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
            self._decide("terminate", instance.id, instance.node_type, reason)
        self.executor.terminate([i.id for i in leaks])

    def _prune(self) -> None:
        cutoff = self.clock() - self.settings.keep_terminated_s
        old = [
            r.instance_id for r in self.store.all() if r.status == S.TERMINATED and r.since < cutoff
        ]
        self.store.delete(old)
        live = {r.instance_id for r in self.store.all() if r.status != S.TERMINATED}
        self._terminate_sent = {k: v for k, v in self._terminate_sent.items() if k in live}
        self._installs_started &= live

    # --- writes --------------------------------------------------------------------------------

    def _move(
        self, rec: InstanceRecord, new: InstanceStatus, reason: str, **fields: str
    ) -> InstanceRecord | None:
        """Compare-and-set one transition; None if someone else moved the record first."""
        try:
            moved = transition(rec, new, self.clock(), reason, **fields)
            self.store.put(moved, expected=rec.status)
        except StaleRecord as exc:
            log.info("record moved elsewhere; re-read next round", detail=str(exc))
            return None
        except IllegalTransition as exc:
            log.warning("transition skipped", detail=str(exc))
            return None
        log.info(
            "instance",
            instance_id=rec.instance_id,
            node_type=rec.node_type,
            status=new.value,
            reason=reason,
        )
        if new in (S.LAUNCH_FAILED, S.INSTALL_FAILED, S.TERMINATE_FAILED):
            self._decide(new.value.lower(), rec.instance_id, rec.node_type, reason)
        return moved

    def _decide(self, action: str, target: str, node_type: str, reason: str) -> None:
        self.decisions.append(Decision(self.clock(), action, target, node_type, reason))

    def take_decisions(self) -> list[Decision]:
        taken, self.decisions = self.decisions, []
        return taken


def _gone_reason(status: InstanceStatus) -> str:
    if status in (S.TERMINATING, S.TERMINATE_FAILED):
        return "terminated"
    return "the provider no longer lists it (preempted or deleted)"

"""The launch path: a plan's launches become batches (one request id, one provider call per node
type) and gangs (a placement group's batches, all or nothing, type by type, rolled back when a
later type fails), launched through the executor, and the instances they yield matched to their
records — deterministically, never two records to one instance.

A launch unit (a gang, or a lone batch) runs under one executor key. A REQUESTED unit with no
launch running in this process (a previous monitor died mid-call) is resent with the same
request ids: every provider answers a request id it knows with the instances it already made.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence

from autoscaler.decisions import DecisionAction, FailureCause
from autoscaler.executor import Executor
from autoscaler.failover import GangOutcome, LaunchOutcome, LaunchRequest
from autoscaler.lifecycle import InstanceRecord, InstanceStatus, new_instance
from autoscaler.lifecycle_store import LifecycleStore, OfferingMark
from autoscaler.lifecycle_writer import LifecycleWriter
from autoscaler.model import LaunchAction, Plan, ScalingConfig, TerminationCause
from autoscaler.settings import Settings
from providers.base import (
    NODE_KIND_WORKER,
    TAG_LAUNCH_HASH,
    TAG_NODE_KIND,
    Instance,
    NodeProvider,
    Offering,
    ProviderState,
    QuotaError,
    TransientError,
)

S = InstanceStatus
UNALLOCATED = (S.REQUESTED, S.ALLOCATION_FAILED)  # records that may still get an instance


def launch_key(rec: InstanceRecord) -> str:
    """The executor key its launch runs under: its gang's, else its batch's."""
    return rec.gang or rec.request_id


def match(
    records: Sequence[InstanceRecord], instances: Sequence[Instance]
) -> tuple[list[tuple[InstanceRecord, Instance]], list[InstanceRecord]]:
    """Pair one batch's records still without an instance with its instances no record holds:
    both sorted by id, so a resend or a second monitor pairs them the same way. Returns the
    pairs and the records left over."""
    taken = {r.cloud_instance_id for r in records if r.cloud_instance_id}
    free = sorted((i for i in instances if i.id not in taken), key=lambda i: i.id)
    waiting = sorted(
        (r for r in records if not r.cloud_instance_id and r.status in UNALLOCATED),
        key=lambda r: r.instance_id,
    )
    pairs = list(zip(waiting, free, strict=False))
    return pairs, waiting[len(pairs) :]


class Provisioner:
    def __init__(
        self,
        store: LifecycleStore,
        writer: LifecycleWriter,
        provider: NodeProvider,
        executor: Executor,
        config: ScalingConfig,
        clock: Callable[[], float],
        settings: Settings,
        *,
        start_install: Callable[[InstanceRecord, Instance], None],
        terminate_sent: Callable[[str], None],
    ) -> None:
        self.store, self.writer, self.provider = store, writer, provider
        self.executor, self.config, self.clock, self.settings = executor, config, clock, settings
        self._start_install = start_install
        self._terminate_sent = terminate_sent

    # --- the plan's launches become records ----------------------------------------------------

    def queue(self, plan: Plan) -> None:
        """QUEUED records, one batch (request id) per gang and node type: a round's plain
        launches of one type go out as one call."""
        batches: dict[tuple[str, str], list[LaunchAction]] = {}
        for action in plan.launches:
            batches.setdefault((action.gang, action.node_type), []).append(action)
        gangs = {gang: f"g-{uuid.uuid4().hex[:12]}" for gang, _ in batches if gang}
        for (gang, node_type), actions in sorted(batches.items()):
            self._queue_batch(node_type, actions, gangs.get(gang, ""))

    def _queue_batch(self, node_type: str, actions: list[LaunchAction], gang: str) -> None:
        now = self.clock()
        spec = self.config.node_types.get(node_type)
        launch_hash = spec.launch_config_hash if spec is not None else ""
        request_id = f"r-{uuid.uuid4().hex[:12]}"
        for action in actions:
            for _ in range(action.count):
                instance_id = f"i-{uuid.uuid4().hex[:12]}"
                rec = new_instance(instance_id, node_type, now, action.reason, launch_hash,
                                   request_id=request_id, gang=gang)
                self.store.put(rec, expected=None)
                self.writer.decide(
                    DecisionAction.LAUNCH, action.cause, instance_id, node_type, action.reason
                )

    # --- sending ---------------------------------------------------------------------------

    def dispatch(self, records: Sequence[InstanceRecord]) -> None:
        """Send every unit with QUEUED records, and resend every REQUESTED one nothing here
        is launching."""
        units: dict[str, list[InstanceRecord]] = {}
        for rec in records:
            if rec.request_id:
                units.setdefault(launch_key(rec), []).append(rec)
        due = [
            (key, members)
            for key, members in sorted(units.items())
            if any(r.status in (S.QUEUED, S.REQUESTED) for r in members)
            and not self.executor.busy(key)
        ]
        if due:
            marks = self.store.unavailable(self.clock())
            for key, members in due:
                self._send(key, members, marks)

    def _send(self, key: str, members: list[InstanceRecord], marks: list[OfferingMark]) -> None:
        fresh = any(r.status is S.QUEUED for r in members)
        requests = []
        for request_id, batch in _batches(members):
            node_type = batch[0].node_type
            offerings = self._usable_offerings(node_type, marks)
            if fresh and not offerings:
                why = f"every offering of {node_type} is unavailable"
                for rec in members:
                    self.writer.move(rec, S.TERMINATED, why)
                return
            # A resend must reach the provider even if every offering is marked: the request
            # id finds what the first call made, whatever the offering.
            offerings = offerings or self.provider.offerings(node_type)
            tags = {TAG_NODE_KIND: NODE_KIND_WORKER, TAG_LAUNCH_HASH: batch[0].launch_config_hash}
            requests.append(LaunchRequest(node_type, len(batch), request_id, tuple(offerings),
                                          tags, all_or_nothing=bool(batch[0].gang)))
        for rec in members:
            if rec.status is S.QUEUED:
                self.writer.move(rec, S.REQUESTED, f"launch of {rec.request_id} sent")
        self.executor.launch(key, requests, self._launched, self._no_capacity)

    def _usable_offerings(self, node_type: str, marks: list[OfferingMark]) -> list[Offering]:
        mine = [m for m in marks if m.node_type == node_type]
        if any(m.whole_type for m in mine):
            return []
        return [o for o in self.provider.offerings(node_type) if not any(m.covers(o) for m in mine)]

    # --- what came back --------------------------------------------------------------------

    def _launched(self, outcome: GangOutcome) -> None:
        """In the launch job's thread: remember failed offerings, give records their
        instances, fail the rest (they stay demand: the planner asks again)."""
        rolled_back = {i.id for i in outcome.rolled_back}
        for result in outcome.outcomes:
            self._remember(result)
            self._allocate(result, rolled_back, outcome.rollback_error is None)
        for request in outcome.not_attempted:
            for rec in self._unallocated(request.request_id):
                self.writer.move(
                    rec, S.ALLOCATION_FAILED, "another part of its gang could not be launched",
                    action=DecisionAction.ALLOCATION_FAILED, cause=FailureCause.GANG_INCOMPLETE,
                )

    def _allocate(self, result: LaunchOutcome, rolled_back: set[str], rollback_sent: bool) -> None:
        request_id = result.request.request_id
        batch = [r for r in self.store.all() if r.request_id == request_id]
        pairs, left = match(batch, result.instances)
        for rec, instance in pairs:
            moved = self.writer.move(rec, S.ALLOCATED, f"launched {instance.id}",
                                     cloud_instance_id=instance.id)
            if moved is None:
                continue
            if instance.id in rolled_back:
                self._rolled_back(moved, rollback_sent)
            elif instance.state is ProviderState.RUNNING:
                self._start_install(moved, instance)  # already up: install now, not next round
        cause = _failure_cause(result)
        for rec in left:
            if rec.status is S.REQUESTED:
                self.writer.move(rec, S.ALLOCATION_FAILED, result.why_short(),
                                 action=DecisionAction.ALLOCATION_FAILED, cause=cause)

    def _rolled_back(self, rec: InstanceRecord, terminate_sent: bool) -> None:
        if terminate_sent:
            # noted before the move: the loop thread sends a terminate for every TERMINATING
            # record it has no note for, and this runs on a launch job's thread
            self._terminate_sent(rec.instance_id)
        self.writer.move(
            rec, S.TERMINATING, "its gang could not be launched whole: rolled back",
            action=DecisionAction.TERMINATE, cause=TerminationCause.GANG_ROLLBACK,
        )

    def _unallocated(self, request_id: str) -> list[InstanceRecord]:
        return [r for r in self.store.all()
                if r.request_id == request_id and r.status in UNALLOCATED]

    def _no_capacity(self, node_type: str, offering: Offering, why: str) -> None:
        """In the launch job's thread, before the next offering is tried: saved now, so a
        monitor that dies before the job returns does not try this offering again."""
        until = self.clock() + self.settings.capacity_backoff_s
        self.store.mark_unavailable(OfferingMark(node_type, offering, until, why))

    def _remember(self, result: LaunchOutcome) -> None:
        """Offerings to leave alone for a while (those without capacity were saved as they
        failed, `_no_capacity`): granted short, throttled; a whole type after a quota error."""
        now, s, node_type = self.clock(), self.settings, result.request.node_type
        marks: list[OfferingMark] = []
        if result.instances and not result.complete and result.granted_by is not None:
            marks.append(OfferingMark(node_type, result.granted_by, now + s.capacity_backoff_s,
                                      result.why_short()))
        if isinstance(result.error, TransientError) and result.failed_offering is not None:
            marks.append(OfferingMark(node_type, result.failed_offering,
                                      now + s.transient_backoff_s, str(result.error)))
        if isinstance(result.error, QuotaError):
            marks.append(OfferingMark(node_type, None, now + s.quota_backoff_s, str(result.error)))
        for mark in marks:
            self.store.mark_unavailable(mark)

    # --- sync: what the provider lists -------------------------------------------------------

    def match_listed(
        self, records: Sequence[InstanceRecord], by_request: Mapping[str, Sequence[Instance]]
    ) -> None:
        """Give records without an instance the instances the provider lists under their
        request id (a restarted monitor, a listing that lagged the launch). Batches whose
        launch runs here are left to its callback, the only other place that pairs them."""
        batches: dict[str, list[InstanceRecord]] = {}
        for rec in records:
            if rec.request_id:
                batches.setdefault(rec.request_id, []).append(rec)
        for request_id, instances in sorted(by_request.items()):
            batch = batches.get(request_id, [])
            waiting = any(not r.cloud_instance_id and r.status in UNALLOCATED for r in batch)
            if not waiting or self.executor.busy(launch_key(batch[0])):
                continue
            pairs, _ = match(batch, instances)
            for rec, instance in pairs:
                self.writer.move(rec, S.ALLOCATED, f"the provider lists {instance.id}",
                                 cloud_instance_id=instance.id)


def _batches(members: list[InstanceRecord]) -> list[tuple[str, list[InstanceRecord]]]:
    """A unit's batches in launch order: by node type (a gang launches type by type)."""
    by_request: dict[str, list[InstanceRecord]] = {}
    for rec in members:
        by_request.setdefault(rec.request_id, []).append(rec)
    return sorted(by_request.items(), key=lambda item: (item[1][0].node_type, item[0]))


def _failure_cause(result: LaunchOutcome) -> FailureCause:
    if isinstance(result.error, QuotaError):
        return FailureCause.QUOTA
    if result.error is not None:
        return FailureCause.PROVIDER_ERROR
    if result.instances:
        return FailureCause.PARTIAL_GRANT
    return FailureCause.NO_CAPACITY

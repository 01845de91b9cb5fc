"""Writing the lifecycle: one transition at a time, compare-and-set on the status read, logged
once as data, and the decisions `rayctl status` shows collected for the monitor to store. Shared
by the reconciler's loop thread and the executor's job threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

import structlog

from autoscaler.decisions import Cause, Decision, DecisionAction
from autoscaler.lifecycle import (
    IllegalTransition,
    InstanceRecord,
    InstanceStatus,
    StaleRecord,
    transition,
)
from autoscaler.lifecycle_store import LifecycleStore

log = structlog.get_logger("autoscaler.reconciler")


class LifecycleWriter:
    def __init__(self, store: LifecycleStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self._decisions: list[Decision] = []
        self._lock = threading.Lock()

    def move(
        self,
        rec: InstanceRecord,
        new: InstanceStatus,
        reason: str,
        *,
        action: DecisionAction | None = None,
        cause: Cause | None = None,
        **fields: str,
    ) -> InstanceRecord | None:
        """Compare-and-set one transition (`fields` sets e.g. cloud_instance_id) and, with an
        `action`, record the decision; None if someone else moved the record first."""
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
            cause=cause.value if cause is not None else None,
            reason=reason,
        )
        if action is not None:
            self.decide(action, cause, rec.instance_id, rec.node_type, reason)
        return moved

    def note_install_finished(self, rec: InstanceRecord) -> None:
        """Same status, compare-and-set: its start commands returned (see the field)."""
        noted = replace(rec, install_finished_at=self.clock())
        try:
            self.store.put(noted, expected=rec.status)
        except StaleRecord as exc:
            log.info("record moved elsewhere; re-read next round", detail=str(exc))

    def decide(
        self,
        action: DecisionAction,
        cause: Cause | None,
        target: str,
        node_type: str,
        reason: str,
    ) -> None:
        with self._lock:
            self._decisions.append(Decision(self.clock(), action, cause, target, node_type, reason))

    def take_decisions(self) -> list[Decision]:
        with self._lock:
            taken, self._decisions = self._decisions, []
        return taken

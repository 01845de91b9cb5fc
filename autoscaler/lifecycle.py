"""The instance lifecycle as data: states, the legal transitions (one comment per edge), a record
with its status history, timeouts read from that history, JSON for Redis, and the store protocol
(with an in-memory store; the Redis one lives with the reconciler)."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field, replace
from typing import Any, Protocol


class InstanceStatus(enum.StrEnum):
    QUEUED = "QUEUED"  # the planner asked for it; nothing sent to the cloud yet
    REQUESTED = "REQUESTED"  # launch sent to the provider with a request id
    ALLOCATED = "ALLOCATED"  # the provider reports the machine exists
    INSTALLING = "INSTALLING"  # the updater runs its start commands
    RUNNING = "RUNNING"  # its raylet registered with the GCS
    DRAINING = "DRAINING"  # GCS drain: no new work, running work finishes
    TERMINATING = "TERMINATING"  # terminate sent to the provider
    TERMINATED = "TERMINATED"  # gone; the record is kept for history only
    LAUNCH_FAILED = "LAUNCH_FAILED"
    INSTALL_FAILED = "INSTALL_FAILED"
    TERMINATE_FAILED = "TERMINATE_FAILED"


S = InstanceStatus

# (from, to) -> why the edge exists. Anything not listed is a bug in the caller.
TRANSITIONS: dict[tuple[InstanceStatus, InstanceStatus], str] = {
    (S.QUEUED, S.REQUESTED): "the executor sent the launch request (request id recorded)",
    (S.QUEUED, S.TERMINATED): "cancelled before any cloud call: nothing to clean up",
    (S.REQUESTED, S.ALLOCATED): "the provider returned or listed the instance",
    (S.REQUESTED, S.LAUNCH_FAILED): "the provider raised, or no instance appeared in time",
    (S.LAUNCH_FAILED, S.ALLOCATED): "eventual consistency: the instance showed up after all",
    (S.LAUNCH_FAILED, S.TERMINATED): "given up; the planner asks again next round if still needed",
    (S.ALLOCATED, S.INSTALLING): "the updater started the node's start commands",
    (S.ALLOCATED, S.TERMINATING): "no longer wanted (config changed) before install began",
    (S.ALLOCATED, S.TERMINATED): "the cloud reports it gone (preempted) before install",
    (S.INSTALLING, S.RUNNING): "the node's raylet registered with the GCS",
    (S.INSTALLING, S.INSTALL_FAILED): "a start command failed, or the raylet never registered",
    (S.INSTALLING, S.TERMINATED): "the cloud reports it gone (preempted) during install",
    (S.INSTALL_FAILED, S.TERMINATING): "a half-installed machine is released, never reused",
    (S.RUNNING, S.DRAINING): "the planner chose it (idle, outdated or over max_workers)",
    (S.RUNNING, S.TERMINATING): "its raylet died or stopped heartbeating: release the machine",
    (S.RUNNING, S.TERMINATED): "the cloud reports it gone (spot preemption, manual delete)",
    (S.DRAINING, S.RUNNING): "the GCS rejected the drain (work arrived): keep serving",
    (S.DRAINING, S.TERMINATING): "drain finished or its deadline passed",
    (S.DRAINING, S.TERMINATED): "the cloud reports it gone while draining",
    (S.TERMINATING, S.TERMINATED): "the provider no longer lists it",
    (S.TERMINATING, S.TERMINATE_FAILED): "the terminate call raised or did not take in time",
    (S.TERMINATE_FAILED, S.TERMINATING): "retry the terminate (unknown ids count as success)",
    (S.TERMINATE_FAILED, S.TERMINATED): "the provider no longer lists it after all",
}

# States whose instance is (or will become) a worker node: counted against max_workers.
ACTIVE = frozenset({S.QUEUED, S.REQUESTED, S.ALLOCATED, S.INSTALLING, S.RUNNING})
# States before the node can take work: the planner counts their capacity as "pending".
PENDING = frozenset({S.QUEUED, S.REQUESTED, S.ALLOCATED, S.INSTALLING})


class IllegalTransition(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class StatusChange:
    status: InstanceStatus
    at: float  # unix seconds, from the injected clock
    reason: str


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One instance as the autoscaler tracks it, from QUEUED to TERMINATED."""

    instance_id: str  # ours, assigned at QUEUED; stable across retries
    node_type: str
    launch_config_hash: str = ""
    request_id: str = ""  # idempotency key of the launch call
    cloud_instance_id: str = ""  # known from ALLOCATED on
    history: tuple[StatusChange, ...] = ()

    @property
    def status(self) -> InstanceStatus:
        return self.history[-1].status

    @property
    def since(self) -> float:
        """When the current status was entered."""
        return self.history[-1].at


def new_instance(
    instance_id: str, node_type: str, now: float, reason: str, launch_config_hash: str = ""
) -> InstanceRecord:
    return InstanceRecord(
        instance_id=instance_id,
        node_type=node_type,
        launch_config_hash=launch_config_hash,
        history=(StatusChange(S.QUEUED, now, reason),),
    )


def can_transition(old: InstanceStatus, new: InstanceStatus) -> bool:
    return (old, new) in TRANSITIONS


def transition(
    record: InstanceRecord, new: InstanceStatus, now: float, reason: str, **fields: str
) -> InstanceRecord:
    """Return the record moved to `new`, history appended; `fields` sets e.g. request_id."""
    old = record.status
    if not can_transition(old, new):
        allowed = sorted(to.value for (frm, to) in TRANSITIONS if frm == old) or ["none"]
        raise IllegalTransition(
            f"instance {record.instance_id}: {old.value} -> {new.value} is not a legal "
            f"transition (from {old.value} only: {', '.join(allowed)})"
        )
    return replace(record, history=(*record.history, StatusChange(new, now, reason)), **fields)


# --- timeouts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timeouts:
    launch_s: float = 600.0  # REQUESTED until ALLOCATED
    install_s: float = 900.0  # ALLOCATED until RUNNING (covers INSTALLING)
    drain_s: float = 600.0  # DRAINING until TERMINATING
    terminate_s: float = 300.0  # TERMINATING until TERMINATED


def _deadline_start(record: InstanceRecord, timeouts: Timeouts) -> tuple[InstanceStatus, float]:
    """For the current status: which earlier status starts its clock, and the allowed seconds."""
    phases = {
        S.REQUESTED: (S.REQUESTED, timeouts.launch_s),
        S.ALLOCATED: (S.ALLOCATED, timeouts.install_s),
        S.INSTALLING: (S.ALLOCATED, timeouts.install_s),  # one budget for the whole install
        S.DRAINING: (S.DRAINING, timeouts.drain_s),
        S.TERMINATING: (S.TERMINATING, timeouts.terminate_s),
    }
    return phases.get(record.status, (record.status, float("inf")))


def timed_out(record: InstanceRecord, now: float, timeouts: Timeouts) -> bool:
    """True when the instance has been in its current phase longer than that phase allows.
    The clock starts at the latest entry into the phase's first state (a DRAINING -> RUNNING ->
    DRAINING bounce restarts the drain clock)."""
    start_status, allowed_s = _deadline_start(record, timeouts)
    for change in reversed(record.history):
        if change.status == start_status:
            return now - change.at > allowed_s
    return False


# --- JSON (Redis values) ----------------------------------------------------------------------


def to_json(record: InstanceRecord) -> str:
    data: dict[str, Any] = {
        "instance_id": record.instance_id,
        "node_type": record.node_type,
        "launch_config_hash": record.launch_config_hash,
        "request_id": record.request_id,
        "cloud_instance_id": record.cloud_instance_id,
        "history": [[c.status.value, c.at, c.reason] for c in record.history],
    }
    return json.dumps(data, separators=(",", ":"))


def from_json(text: str | bytes) -> InstanceRecord:
    data = json.loads(text)
    try:
        history = tuple(StatusChange(S(s), float(at), str(r)) for s, at, r in data["history"])
        return InstanceRecord(
            instance_id=data["instance_id"],
            node_type=data["node_type"],
            launch_config_hash=data.get("launch_config_hash", ""),
            request_id=data.get("request_id", ""),
            cloud_instance_id=data.get("cloud_instance_id", ""),
            history=history,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"corrupt instance record {text!r:.200}: {exc}") from exc


# --- storage ----------------------------------------------------------------------------------


class StaleRecord(RuntimeError):
    """Someone else moved the instance since it was read: re-read and decide again."""


class LifecycleStore(Protocol):
    """Where instance records live. `put` is compare-and-set on the status the caller read, so
    two monitors (or a restarted one) never apply the same transition twice."""

    def get(self, instance_id: str) -> InstanceRecord | None: ...

    def all(self) -> list[InstanceRecord]: ...

    def put(self, record: InstanceRecord, expected: InstanceStatus | None = None) -> None:
        """Store `record`. With `expected`, raise StaleRecord unless the stored record is in
        that status; with None, the id must be new."""
        ...


@dataclass
class InMemoryLifecycleStore:
    records: dict[str, InstanceRecord] = field(default_factory=dict)

    def get(self, instance_id: str) -> InstanceRecord | None:
        return self.records.get(instance_id)

    def all(self) -> list[InstanceRecord]:
        return [self.records[k] for k in sorted(self.records)]

    def put(self, record: InstanceRecord, expected: InstanceStatus | None = None) -> None:
        current = self.records.get(record.instance_id)
        found = current.status if current is not None else None
        if found != expected:
            raise StaleRecord(
                f"instance {record.instance_id}: expected status {_name(expected)}, "
                f"found {_name(found)}"
            )
        self.records[record.instance_id] = record


def _name(status: InstanceStatus | None) -> str:
    return status.value if status is not None else "<absent>"

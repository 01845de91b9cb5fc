"""The instance lifecycle as data: states named by their layer, the legal transitions (one comment
per edge), a record with its status history, timeouts read from that history, and its JSON (with
the migration of names older versions stored). Stores live in autoscaler/lifecycle_store.py."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, replace
from typing import Any


class InstanceStatus(enum.StrEnum):
    """Each name says its layer: the cloud's VM (REQUESTED, ALLOCATED) or our raylet on it."""

    QUEUED = "QUEUED"  # the planner asked for it; nothing sent to the cloud yet
    REQUESTED = "REQUESTED"  # its batch's launch was sent to the provider under a request id
    ALLOCATED = "ALLOCATED"  # the VM exists: the provider returned or lists it
    RAYLET_INSTALLING = "RAYLET_INSTALLING"  # the installer runs the node's start commands
    RAYLET_RUNNING = "RAYLET_RUNNING"  # its raylet registered with the GCS
    RAYLET_DRAINING = "RAYLET_DRAINING"  # GCS drain: no new work, running work finishes
    TERMINATING = "TERMINATING"  # terminate sent to the provider
    TERMINATED = "TERMINATED"  # gone; the record is kept for history only
    ALLOCATION_FAILED = "ALLOCATION_FAILED"  # the cloud gave no VM for it
    RAYLET_INSTALL_FAILED = "RAYLET_INSTALL_FAILED"  # a VM, but its raylet never came up
    TERMINATION_FAILED = "TERMINATION_FAILED"  # the cloud still lists it after terminate


S = InstanceStatus

# Names records were written with before the names said their layer. Records in Redis are
# migrated when read (and the store's compare-and-set accepts the old name for the new).
LEGACY_NAMES: dict[str, InstanceStatus] = {
    "INSTALLING": S.RAYLET_INSTALLING,
    "RUNNING": S.RAYLET_RUNNING,
    "DRAINING": S.RAYLET_DRAINING,
    "LAUNCH_FAILED": S.ALLOCATION_FAILED,
    "INSTALL_FAILED": S.RAYLET_INSTALL_FAILED,
    "TERMINATE_FAILED": S.TERMINATION_FAILED,
}
_OLD_NAME_OF = {new: old for old, new in LEGACY_NAMES.items()}


def parse_status(name: str) -> InstanceStatus:
    """A stored status name, today's or a legacy one; ValueError for anything else."""
    legacy = LEGACY_NAMES.get(name)
    return legacy if legacy is not None else S(name)


def legacy_name(status: InstanceStatus) -> str:
    """The name an older rayctl stored for `status` ("" when it is unchanged)."""
    return _OLD_NAME_OF.get(status, "")


# (from, to) -> why the edge exists. Anything not listed is a bug in the caller.
TRANSITIONS: dict[tuple[InstanceStatus, InstanceStatus], str] = {
    (S.QUEUED, S.REQUESTED): "its batch's launch was sent (the batch's request id recorded)",
    (S.QUEUED, S.TERMINATED): "cancelled before any cloud call: nothing to clean up",
    (S.REQUESTED, S.ALLOCATED): "the provider returned or listed an instance of its request",
    (S.REQUESTED, S.ALLOCATION_FAILED): "the provider raised, granted fewer, or timed out",
    (S.ALLOCATION_FAILED, S.ALLOCATED): "eventual consistency: the instance showed up after all",
    (S.ALLOCATION_FAILED, S.TERMINATED): "given up; the planner asks again if still needed",
    (S.ALLOCATED, S.RAYLET_INSTALLING): "the installer started the node's start commands",
    (S.ALLOCATED, S.TERMINATING): "no longer wanted (config changed, gang rolled back)",
    (S.ALLOCATED, S.TERMINATED): "the cloud reports it gone (preempted) before install",
    (S.RAYLET_INSTALLING, S.RAYLET_RUNNING): "the node's raylet registered with the GCS",
    (S.RAYLET_INSTALLING, S.RAYLET_INSTALL_FAILED): "a start command failed, or no raylet came",
    (S.RAYLET_INSTALLING, S.TERMINATING): "its gang failed after a restart: rolled back",
    (S.RAYLET_INSTALLING, S.TERMINATED): "the cloud reports it gone (preempted) during install",
    (S.RAYLET_INSTALL_FAILED, S.TERMINATING): "a half-installed machine is released, never reused",
    (S.RAYLET_RUNNING, S.RAYLET_DRAINING): "the planner chose it (idle, outdated, over a cap)",
    (S.RAYLET_RUNNING, S.TERMINATING): "its raylet died or stopped heartbeating: release the VM",
    (S.RAYLET_RUNNING, S.TERMINATED): "the cloud reports it gone (spot preemption, manual delete)",
    (S.RAYLET_DRAINING, S.RAYLET_RUNNING): "the GCS rejected the drain (work arrived): serve on",
    (S.RAYLET_DRAINING, S.TERMINATING): "drained, its node died, or the drain timeout passed",
    (S.RAYLET_DRAINING, S.TERMINATED): "the cloud reports it gone while draining",
    (S.TERMINATING, S.TERMINATED): "the provider no longer lists it",
    (S.TERMINATING, S.TERMINATION_FAILED): "the terminate call raised or did not take in time",
    (S.TERMINATION_FAILED, S.TERMINATING): "retry the terminate (unknown ids count as success)",
    (S.TERMINATION_FAILED, S.TERMINATED): "the provider no longer lists it after all",
}

# States whose instance is (or will become) a worker node: counted against max_workers.
ACTIVE = frozenset({S.QUEUED, S.REQUESTED, S.ALLOCATED, S.RAYLET_INSTALLING, S.RAYLET_RUNNING})
# States before the node can take work: the planner counts their capacity as "pending".
PENDING = frozenset({S.QUEUED, S.REQUESTED, S.ALLOCATED, S.RAYLET_INSTALLING})
# States that record a failure (`rayctl status` lists them as recent failures).
FAILED = frozenset({S.ALLOCATION_FAILED, S.RAYLET_INSTALL_FAILED, S.TERMINATION_FAILED})


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
    # The batch's idempotency key: every record launched in one provider call shares it, so a
    # resend after a crash gets the same instances back.
    request_id: str = ""
    cloud_instance_id: str = ""  # known from ALLOCATED on
    history: tuple[StatusChange, ...] = ()
    gang: str = ""  # the gang (placement group) it launches with, all or nothing; "" alone
    # When its start commands returned (0: still running, or died with the monitor that ran
    # them: installs run in the monitor's threads, so a restarted monitor knows at once).
    install_finished_at: float = 0.0

    @property
    def status(self) -> InstanceStatus:
        return self.history[-1].status

    @property
    def since(self) -> float:
        """When the current status was entered."""
        return self.history[-1].at


def new_instance(
    instance_id: str,
    node_type: str,
    now: float,
    reason: str,
    launch_config_hash: str = "",
    *,
    request_id: str = "",
    gang: str = "",
) -> InstanceRecord:
    return InstanceRecord(
        instance_id=instance_id,
        node_type=node_type,
        launch_config_hash=launch_config_hash,
        request_id=request_id,
        history=(StatusChange(S.QUEUED, now, reason),),
        gang=gang,
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
    history = (*record.history, StatusChange(new, now, reason))
    changed: dict[str, Any] = dict(fields)  # (only the record's str fields are set here)
    return replace(record, history=history, **changed)


# --- timeouts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timeouts:
    launch_s: float = 600.0  # REQUESTED until ALLOCATED
    install_s: float = 900.0  # ALLOCATED until RAYLET_RUNNING (covers RAYLET_INSTALLING)
    drain_s: float = 600.0  # RAYLET_DRAINING until TERMINATING
    terminate_s: float = 300.0  # TERMINATING until TERMINATED


def _deadline_start(record: InstanceRecord, timeouts: Timeouts) -> tuple[InstanceStatus, float]:
    """For the current status: which earlier status starts its clock, and the allowed seconds."""
    phases = {
        S.REQUESTED: (S.REQUESTED, timeouts.launch_s),
        S.ALLOCATED: (S.ALLOCATED, timeouts.install_s),
        # one budget for the whole install
        S.RAYLET_INSTALLING: (S.ALLOCATED, timeouts.install_s),
        S.RAYLET_DRAINING: (S.RAYLET_DRAINING, timeouts.drain_s),
        S.TERMINATING: (S.TERMINATING, timeouts.terminate_s),
    }
    return phases.get(record.status, (record.status, float("inf")))


def timed_out(record: InstanceRecord, now: float, timeouts: Timeouts) -> bool:
    """True when the instance has been in its current phase longer than that phase allows.
    The clock starts at the latest entry into the phase's first state (a drain rejected and
    asked again restarts the drain clock)."""
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
        "gang": record.gang,
        "install_finished_at": record.install_finished_at,
    }
    return json.dumps(data, separators=(",", ":"))


def from_json(text: str | bytes) -> InstanceRecord:
    """A stored record; status names an older version wrote are migrated (LEGACY_NAMES)."""
    data = json.loads(text)
    try:
        history = tuple(
            StatusChange(parse_status(s), float(at), str(r)) for s, at, r in data["history"]
        )
        return InstanceRecord(
            instance_id=data["instance_id"],
            node_type=data["node_type"],
            launch_config_hash=data.get("launch_config_hash", ""),
            request_id=data.get("request_id", ""),
            cloud_instance_id=data.get("cloud_instance_id", ""),
            history=history,
            gang=data.get("gang", ""),
            install_finished_at=float(data.get("install_finished_at", 0.0)),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"corrupt instance record {text!r:.200}: {exc}") from exc


class StaleRecord(RuntimeError):
    """Someone else moved the instance since it was read: re-read and decide again."""

"""What the autoscaler did and why, as `rayctl status` shows it: a Decision is an action (enum), a
cause (enum: the plan's launch and termination causes, or why something failed) and the human
reason. Stored as JSON by the lifecycle store; entries older versions wrote are migrated here."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from autoscaler.model import LaunchCause, TerminationCause


class DecisionAction(enum.StrEnum):
    LAUNCH = "launch"  # records queued for a launch
    DRAIN = "drain"  # a drain asked of the GCS
    DRAIN_REJECTED = "drain_rejected"  # the GCS refused it: the node serves on
    TERMINATE = "terminate"  # the instance is being released
    ALLOCATION_FAILED = "allocation_failed"
    RAYLET_INSTALL_FAILED = "raylet_install_failed"
    TERMINATION_FAILED = "termination_failed"
    INFEASIBLE = "infeasible"  # demand no node type can hold: nothing will be launched for it


class FailureCause(enum.StrEnum):
    """Why something the autoscaler wanted did not happen."""

    NO_CAPACITY = "no_capacity"  # CapacityError on every usable offering
    PARTIAL_GRANT = "partial_grant"  # the cloud granted fewer instances than the batch asked
    QUOTA = "quota"  # an account quota
    PROVIDER_ERROR = "provider_error"  # auth, config, throttling, or another provider error
    GANG_INCOMPLETE = "gang_incomplete"  # another part of its gang could not be launched
    ALLOCATION_TIMEOUT = "allocation_timeout"  # no instance within the launch timeout
    INSTALL_COMMAND_FAILED = "install_command_failed"  # a setup or start command failed
    INSTALL_TIMEOUT = "install_timeout"  # no raylet registered within the install timeout
    INSTALL_ORPHANED = "install_orphaned"  # its install died with the previous monitor
    TERMINATE_ERROR = "terminate_error"  # the terminate call raised
    TERMINATE_TIMEOUT = "terminate_timeout"  # still listed long after terminate
    NO_FITTING_TYPE = "no_fitting_type"  # infeasible: no node type can hold the shape


Cause = LaunchCause | TerminationCause | FailureCause
CAUSE_TYPES: tuple[type[LaunchCause] | type[TerminationCause] | type[FailureCause], ...] = (
    LaunchCause,
    TerminationCause,
    FailureCause,
)

# Action names written before actions said their layer, as the lifecycle states were renamed.
LEGACY_ACTIONS = {
    "launch_failed": DecisionAction.ALLOCATION_FAILED,
    "install_failed": DecisionAction.RAYLET_INSTALL_FAILED,
    "terminate_failed": DecisionAction.TERMINATION_FAILED,
}


def parse_cause(value: str | None) -> Cause | None:
    """A stored cause name (values are unique across the three enums); None if not recorded."""
    if value is None:
        return None
    for kind in CAUSE_TYPES:
        try:
            return kind(value)
        except ValueError:
            continue
    raise ValueError(f"unknown decision cause {value!r}")


@dataclass(frozen=True, slots=True)
class Decision:
    at: float
    action: DecisionAction
    cause: Cause | None  # None only for decisions an older version stored without one
    target: str  # a lifecycle instance id, a cloud instance id (leaks) or a shape (infeasible)
    node_type: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "action": self.action.value,
            "cause": self.cause.value if self.cause is not None else None,
            "target": self.target,
            "node_type": self.node_type,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        action = str(data["action"])
        return cls(
            at=float(data["at"]),
            action=LEGACY_ACTIONS.get(action) or DecisionAction(action),
            cause=parse_cause(data.get("cause")),
            target=str(data["target"]),
            node_type=str(data.get("node_type", "")),
            reason=str(data.get("reason", "")),
        )

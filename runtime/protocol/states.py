"""The runtime's states, named once: a node, an actor, a placement group (and its strategy), the
kind of a queued shape, a task's status and type. On the wire they are proto enums
(runtime/protocol/common.proto) whose value names are these members' names; `.wire` and
`from_wire` convert, here and nowhere else."""

from __future__ import annotations

import enum
from typing import Any, Self

from runtime.protocol import common_pb2


class _WireEnum(enum.StrEnum):
    """A StrEnum with a proto enum twin: member NAME <-> wire value NAME."""

    @property
    def wire(self) -> Any:
        """The proto enum value (an int, typed as the message field's enum by the stubs)."""
        return _WIRE_TYPES[type(self)].Value(self.name)

    @classmethod
    def from_wire(cls, value: int) -> Self:
        """The member for a wire value; a value this version does not know is a ValueError that
        names it (the sender speaks another protocol version, or left the field unset)."""
        try:
            return _BY_WIRE[cls][value]  # type: ignore[return-value]
        except KeyError:
            raise ValueError(
                f"{value} is not a {cls.__name__} of this protocol version: is the sender a "
                "rayctl of another version, or did it leave the field unset?"
            ) from None


class NodeState(_WireEnum):
    ALIVE = "ALIVE"  # its raylet heartbeats; it takes work
    DRAINING = "DRAINING"  # takes no new work; running work finishes (see NodeInfo.drain)
    DEAD = "DEAD"  # stopped, or silent past the death timeout


class ActorState(_WireEnum):
    PENDING = "PENDING"  # waiting for a node with room (demand for the autoscaler)
    ALIVE = "ALIVE"
    RESTARTING = "RESTARTING"  # its worker died; restarts left (demand, as PENDING)
    DEAD = "DEAD"


class PlacementGroupState(_WireEnum):
    PENDING = "PENDING"  # not reserved yet (demand for the autoscaler)
    CREATED = "CREATED"  # every bundle reserved on its node
    REMOVED = "REMOVED"


class PlacementStrategy(_WireEnum):
    PACK = "PACK"  # one node if it fits, else as few as possible
    SPREAD = "SPREAD"  # distinct nodes if possible, else shared
    STRICT_PACK = "STRICT_PACK"  # all bundles on one node
    STRICT_SPREAD = "STRICT_SPREAD"  # every bundle on a different node


class ShapeKind(_WireEnum):
    """What a queued shape of a node's load is for (the load rows in Redis say "task"/"actor")."""

    TASK = "task"
    ACTOR = "actor"


class TaskStatus(_WireEnum):
    """A task's state as its owner saw it last (Ray's TaskStatus names)."""

    PENDING_ARGS_AVAIL = "PENDING_ARGS_AVAIL"  # waiting for the objects passed to it
    PENDING_NODE_ASSIGNMENT = "PENDING_NODE_ASSIGNMENT"  # queued for a leased worker
    SUBMITTED_TO_WORKER = "SUBMITTED_TO_WORKER"  # an actor call sent to its actor
    RUNNING = "RUNNING"  # on a leased worker
    FINISHED = "FINISHED"
    FAILED = "FAILED"

    @property
    def ended(self) -> bool:
        return self in (TaskStatus.FINISHED, TaskStatus.FAILED)


class TaskType(_WireEnum):
    NORMAL_TASK = "NORMAL_TASK"
    ACTOR_TASK = "ACTOR_TASK"


_WIRE_TYPES: dict[type[_WireEnum], Any] = {
    NodeState: common_pb2.NodeInfo.State,
    ActorState: common_pb2.ActorInfo.State,
    PlacementGroupState: common_pb2.PlacementGroupInfo.State,
    PlacementStrategy: common_pb2.PlacementGroupInfo.Strategy,
    ShapeKind: common_pb2.ShapeCount.Kind,
    TaskStatus: common_pb2.TaskEvent.Status,
    TaskType: common_pb2.TaskEvent.Type,
}
# wire value -> member, per enum: read for every record the autoscaler decodes
_BY_WIRE: dict[type[_WireEnum], dict[int, _WireEnum]] = {
    cls: {wire.Value(member.name): member for member in cls} for cls, wire in _WIRE_TYPES.items()
}

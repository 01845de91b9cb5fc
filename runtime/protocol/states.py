"""The runtime's states, named once: a node, an actor, a placement group. On the wire they are
proto enums (runtime/protocol/common.proto); in Python these StrEnums, converted here and
nowhere else."""

from __future__ import annotations

import enum


class NodeState(enum.StrEnum):
    ALIVE = "ALIVE"  # its raylet heartbeats; it takes work
    DRAINING = "DRAINING"  # takes no new work; running work finishes (see NodeInfo.drain)
    DEAD = "DEAD"  # stopped, or silent past the death timeout


class ActorState(enum.StrEnum):
    PENDING = "PENDING"  # waiting for a node with room (demand for the autoscaler)
    ALIVE = "ALIVE"
    RESTARTING = "RESTARTING"  # its worker died; restarts left (demand, as PENDING)
    DEAD = "DEAD"


class PlacementGroupState(enum.StrEnum):
    PENDING = "PENDING"  # not reserved yet (demand for the autoscaler)
    CREATED = "CREATED"  # every bundle reserved on its node
    REMOVED = "REMOVED"

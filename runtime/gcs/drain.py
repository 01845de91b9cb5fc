"""The GCS's side of the drain protocol (the raylet's: runtime/raylet/drain.py; the autoscaler's:
autoscaler/drain.py). DrainNode answers at once: rejected (an unknown or dead node, or the
raylet's refusal: busy under idle_only, objects still in use), or accepted: the node is DRAINING
(no actor, bundle or spilled lease goes there) and its raylet drains in the background. The
progress comes with its heartbeats and is kept in the node's row (NodeInfo.drain)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

from runtime.gcs.tables import Tables
from runtime.protocol import common_pb2, gcs_pb2, raylet_pb2
from runtime.protocol.common_pb2 import NodeInfo

log = logging.getLogger("rayctl.gcs.drain")

# The raylet answers at once; this only bounds one that is stuck.
RAYLET_ANSWER_TIMEOUT_S = 5.0


async def drain_node(t: Tables, request: gcs_pb2.DrainNodeRequest,
                     raylet: Callable[[NodeInfo], Any]) -> gcs_pb2.DrainNodeReply:
    """Ask the node's raylet to drain; `raylet(node)` is its gRPC stub."""
    node = t.nodes.get(request.node_id)
    if node is None:
        return _rejected(f"node {request.node_id} is unknown to the GCS")
    if node.state == NodeInfo.DEAD:
        return _rejected(f"node {request.node_id} is dead ({node.death_reason})")
    asked = raylet_pb2.DrainRequest(deadline_s=request.deadline_s, force=request.force,
                                    reason=request.reason, idle_only=request.idle_only)
    try:
        reply = await raylet(node).DrainNode(asked, timeout=RAYLET_ANSWER_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        return _rejected(f"the raylet of node {node.node_id} did not answer: {exc.details()}")
    if not reply.accepted:
        return _rejected(reply.reason)
    if node.state != NodeInfo.DEAD:  # (it may have died while we asked)
        await record_progress(t, node, reply.drain)
    return gcs_pb2.DrainNodeReply(accepted=True, reason=reply.reason)


def _rejected(reason: str) -> gcs_pb2.DrainNodeReply:
    log.info("drain rejected: %s", reason)
    return gcs_pb2.DrainNodeReply(accepted=False, reason=reason)


def take_progress(node: NodeInfo, drain: common_pb2.NodeDrain) -> bool:
    """Put a drain's progress into the node's row (DRAINING from the first report on);
    True if the row changed."""
    if node.state == NodeInfo.DRAINING and node.drain == drain:
        return False
    node.state = NodeInfo.DRAINING
    node.drain.CopyFrom(drain)
    return True


async def record_progress(t: Tables, node: NodeInfo, drain: common_pb2.NodeDrain) -> None:
    """take_progress, written to Redis; the drain's start is announced once."""
    starts = node.state != NodeInfo.DRAINING
    if take_progress(node, drain):
        await t.put_node(node)
    if starts:
        await announce(t, node)


async def announce(t: Tables, node: NodeInfo) -> None:
    """A node started draining: tell `node_changes` subscribers and the event log."""
    await t.publish_node(node)
    await t.event("node_draining", f"node {node.node_id}: {node.drain.reason or 'drain requested'}")
    log.info("node %s is draining: %s", node.node_id, node.drain.reason or "no reason given")

"""Freeing objects on this node: an owner's `free`, a peer's FreeObjects, and telling the nodes
that pulled a copy from here to delete theirs."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import TYPE_CHECKING

import grpc

from runtime.protocol import raylet_pb2

if TYPE_CHECKING:
    from runtime.raylet.server import Raylet

log = logging.getLogger("rayctl.raylet")


def free(raylet: Raylet, batch: list[tuple[str, str]]) -> None:
    """An owner freed these (object id, primary node) pairs: delete every copy, here, on the
    primary node, and on the nodes that pulled a copy from here."""
    remote: dict[str, list[str]] = defaultdict(list)
    for object_id, node_id in batch:
        if node_id != raylet.node_id:
            remote[node_id].append(object_id)
    delete_copies(raylet, [object_id for object_id, _ in batch], remote)


def delete_copies(
    raylet: Raylet, object_ids: list[str], remote: dict[str, list[str]] | None = None
) -> None:
    """Delete local copies; tell the nodes that pulled them (and `remote`) to do the same."""
    remote = remote if remote is not None else defaultdict(list)
    for object_id in object_ids:
        raylet.store.delete(object_id)
        raylet.owners.deleted(object_id)
        for node_id in raylet.transfer.copies.pop(object_id, ()):
            remote.setdefault(node_id, []).append(object_id)
    for node_id, freed in remote.items():
        address = raylet.node_grpc_address(node_id)
        if address is not None and node_id != raylet.node_id:
            asyncio.ensure_future(_free_remote(raylet, address, freed))


async def _free_remote(raylet: Raylet, address: str, object_ids: list[str]) -> None:
    try:
        await raylet.raylet_stub(address).FreeObjects(
            raylet_pb2.FreeRequest(object_ids=object_ids), timeout=10
        )
    except grpc.aio.AioRpcError as exc:
        log.warning("could not free %d objects on %s: %s", len(object_ids), address, exc.details())

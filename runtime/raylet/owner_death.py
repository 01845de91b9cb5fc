"""Freeing the objects of owners that died. A local owner (a driver or worker of this node) is
dead when its connection to this raylet closes; a remote owner (an address on another node) when
its address refuses connections, looked at every OWNER_SWEEP_INTERVAL_S while objects here name
it. Every copy of a freed object goes (runtime/raylet/objects.py), so nothing outlives its owner."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from runtime.raylet import objects
from runtime.transport import Connection, connect

if TYPE_CHECKING:
    from runtime.raylet.server import Raylet

log = logging.getLogger("rayctl.raylet.owners")

# How often remote owners named by objects here are looked at. A refused connection is a dead
# owner; a slow or silent one is not (a live owner under load must never lose its objects).
OWNER_SWEEP_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 2.0
# A process's sockets close a moment before it exits: its partial writes are looked at again then.
PARTIAL_RECHECK_S = 1.0


def on_local_process_gone(r: Raylet, conn: Connection, was_local: bool) -> None:
    """`conn` closed: free what it put, and (when it was this node's driver or worker, not a
    submitter that followed a spillback here) what tasks returned to its address."""
    dead: set[Connection | str] = {conn}
    address = conn.peer_info.get("address")
    if was_local and isinstance(address, str):
        dead.add(address)
        r.owners.mark_gone(address)
    _free_owned_by(r, dead)
    if was_local:  # what it was writing when it died; again once its process has surely exited
        _abort_partial(r)
        asyncio.get_running_loop().call_later(PARTIAL_RECHECK_S, _abort_partial, r)


def _free_owned_by(r: Raylet, dead: set[Connection | str]) -> None:
    object_ids = r.owners.owned_by(dead)
    if object_ids:
        log.info("freeing %d object(s) whose owner died", len(object_ids))
        objects.delete_copies(r, object_ids)


def _abort_partial(r: Raylet) -> None:
    try:
        r.store.abort_partial()
    except OSError as exc:  # the node is stopping and its directories went first
        log.debug("partial writes not looked at: %s", exc)


async def sweep_remote_owners(r: Raylet) -> None:
    """Until the node stops: free the objects of remote owners that are gone."""
    while not r.stopping.is_set():
        try:
            await asyncio.wait_for(r.stopping.wait(), OWNER_SWEEP_INTERVAL_S)
        except TimeoutError:
            pass
        addresses = r.owners.remote_addresses()
        if not addresses:
            continue
        refused = await asyncio.gather(*(_refuses(a, r.token) for a in addresses))
        dead: set[Connection | str] = {a for a, no in zip(addresses, refused, strict=True) if no}
        for address in dead:
            r.owners.mark_gone(str(address))
        if dead:
            _free_owned_by(r, dead)


async def _refuses(address: str, token: str) -> bool:
    try:
        conn = await connect(
            address, token, info={"role": "owner-probe"}, timeout_s=PROBE_TIMEOUT_S
        )
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    except Exception:  # noqa: BLE001 - slow or odd: not proof the owner is gone
        return False
    conn.close()
    return False

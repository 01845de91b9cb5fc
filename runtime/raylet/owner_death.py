"""Freeing the objects of owners that died. A local owner (a driver or worker of this node) is
dead when its connection to this raylet closes; a remote owner (an address on another node) when
its address refuses connections, or, when it does not answer at all, when its host is the
address of a node the GCS declared dead and of no live node (the whole machine went away: a
probe there times out instead of being refused). Remote owners are looked at every
OWNER_SWEEP_INTERVAL_S while objects here name them. Every copy of a freed object goes
(runtime/raylet/objects.py), so nothing outlives its owner."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import grpc

from runtime.protocol import gcs_pb2
from runtime.protocol.common_pb2 import NodeInfo
from runtime.raylet import objects
from runtime.tls import ClusterTls
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


class Probe(enum.Enum):
    """How a remote owner's address answered a connection."""

    ANSWERED = "answered"
    REFUSED = "refused"  # nobody listens there: the process is gone
    SILENT = "silent"  # a timeout or no route: a busy owner, or a machine that went away


def gone_owners(
    probes: Sequence[tuple[str, Probe]], live_hosts: Iterable[str], dead_hosts: Iterable[str]
) -> set[str]:
    """The owners to count as dead: refused, or silent on the host of a dead node that no live
    node shares (a silent owner elsewhere, say a driver off the cluster, is left alone)."""
    lost_machines = set(dead_hosts) - set(live_hosts)
    return {
        address
        for address, probe in probes
        if probe is Probe.REFUSED
        or (probe is Probe.SILENT and address.rpartition(":")[0] in lost_machines)
    }


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
        answers = await asyncio.gather(*(_probe(a, r.token, r.tls) for a in addresses))
        probes = list(zip(addresses, answers, strict=True))
        live_hosts: set[str] = set()
        dead_hosts: set[str] = set()
        if any(p is Probe.SILENT for _, p in probes):
            live_hosts, dead_hosts = await _node_hosts(r)
        dead: set[Connection | str] = set(gone_owners(probes, live_hosts, dead_hosts))
        for address in dead:
            r.owners.mark_gone(str(address))
        if dead:
            _free_owned_by(r, dead)


async def _probe(address: str, token: str, tls: ClusterTls | None) -> Probe:
    try:
        conn = await connect(
            address, token, info={"role": "owner-probe"}, timeout_s=PROBE_TIMEOUT_S, tls=tls
        )
    except (ConnectionRefusedError, ConnectionResetError):
        return Probe.REFUSED
    except Exception:  # noqa: BLE001 - slow, unreachable or odd: not proof on its own
        return Probe.SILENT
    conn.close()
    return Probe.ANSWERED


async def _node_hosts(r: Raylet) -> tuple[set[str], set[str]]:
    """The hosts of live nodes and of dead ones, from the GCS (empty when it cannot say)."""
    if r.gcs is None:
        return set(), set()
    try:
        reply = await r.gcs.GetNodes(gcs_pb2.Empty(), timeout=5)
    except grpc.aio.AioRpcError:
        return set(), set()
    live = {n.address for n in reply.nodes if n.state != NodeInfo.DEAD}
    dead = {n.address for n in reply.nodes if n.state == NodeInfo.DEAD}
    return live, dead

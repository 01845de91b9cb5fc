"""The raylet's side of actors: the GCS asks a node to start an actor (a dedicated worker runs
its constructor) or to kill one; an actor's worker that dies is reported to the GCS, which
decides whether it restarts."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

from runtime.protocol import common_pb2, gcs_pb2, raylet_pb2
from runtime.raylet.gpus import gpu_amount
from runtime.raylet.worker_pool import Worker
from runtime.resources import fits, subtract

if TYPE_CHECKING:
    from runtime.raylet.server import Raylet

log = logging.getLogger("rayctl.raylet")


async def start_actor(raylet: Raylet, actor: common_pb2.ActorInfo) -> raylet_pb2.StartActorReply:
    need = dict(actor.resources)
    devices = None
    if fits(need, raylet.available) and not raylet.draining:  # placed before the GCS saw the drain
        devices = raylet.gpus.assign(gpu_amount(need))
    if devices is None:
        return raylet_pb2.StartActorReply(no_room=True)
    subtract(raylet.available, need)
    raylet.update_idle()
    assert raylet.pool is not None
    env = json.loads(actor.runtime_env_json) if actor.runtime_env_json else None
    try:
        worker = await raylet.pool.acquire(*raylet.envs.setup(env))
    except Exception as exc:  # noqa: BLE001 - e.g. a pip requirement that cannot install
        raylet.give_back(need)
        raylet.gpus.release(devices, gpu_amount(need))
        raylet.dispatch()
        return raylet_pb2.StartActorReply(error=f"runtime_env: {exc}")
    worker.actor_id = actor.actor_id
    worker.gpu_ids, worker.gpus = devices, gpu_amount(need)
    worker.busy_since = time.monotonic()
    worker.retriable = actor.max_restarts == -1 or actor.num_restarts < actor.max_restarts
    raylet.actor_workers[actor.actor_id] = (worker, need)
    assert worker.conn is not None
    try:
        await worker.conn.request(
            "create_actor",
            {
                "actor_id": actor.actor_id,
                "spec": actor.creation_spec,
                "job_id": actor.job_id,
                "gpu_ids": list(devices),
            },
        )
    except Exception as exc:  # noqa: BLE001 - the constructor failed or the worker died
        raylet.actor_workers.pop(actor.actor_id, None)
        worker.actor_id = ""
        raylet.give_back(need)
        raylet.give_back_devices(worker)
        raylet.pool.kill(worker)
        raylet.dispatch()
        return raylet_pb2.StartActorReply(error=str(exc) or repr(exc))
    return raylet_pb2.StartActorReply(address=worker.address, pid=worker.pid)


def kill_actor_worker(raylet: Raylet, actor_id: str) -> None:
    entry = raylet.actor_workers.get(actor_id)
    if entry is not None and raylet.pool is not None:
        raylet.pool.kill(entry[0])


def on_worker_death(raylet: Raylet, worker: Worker, code: int) -> None:
    if worker.lease_id:
        raylet.return_lease(worker.lease_id)
    if worker.actor_id:
        entry = raylet.actor_workers.pop(worker.actor_id, None)
        if entry is not None:
            raylet.give_back(entry[1])
            raylet.give_back_devices(worker)
            report_actor_died(raylet, worker, code)
        raylet.dispatch()


def report_actor_died(raylet: Raylet, worker: Worker, code: int) -> None:
    """Tell the GCS (until it acknowledges: it decides on a restart). The worker's address names
    the dead incarnation, so a repeat, or a report that arrives after the actor restarted
    elsewhere, changes nothing."""
    if raylet.stopping.is_set():
        return
    request = gcs_pb2.ActorDiedRequest(
        actor_id=worker.actor_id,
        worker_address=worker.address,
        reason=worker.death_note or f"the actor's worker process exited (code {code})",
    )
    raylet.reports.send("ReportActorDied", request, f"actor {worker.actor_id}'s death")

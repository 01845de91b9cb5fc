"""The raylet's pool of Python worker processes: prestarted, reused across leases, replaced when
they die. A worker connects back over the node-local transport and says which port it serves."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from runtime import ids
from runtime.transport import Connection

log = logging.getLogger("rayctl.raylet.pool")

MAX_EARLY_DEATHS = 5  # workers of one runtime_env dying before registering, in a row


@dataclass(eq=False)
class Worker:
    worker_id: str
    proc: asyncio.subprocess.Process
    conn: Connection | None = None
    address: str = ""
    lease_id: str = ""
    actor_id: str = ""
    owner: Connection | None = None
    registered: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_event_loop().create_future()
    )
    dead: bool = False
    env_key: str = ""  # runtime_env the worker was started with ("" = the node's default)
    blocked: bool = False  # inside get()/wait(): its lease's CPUs are lent to others meanwhile
    gpu_ids: tuple[str, ...] = ()  # the devices its lease or actor holds (see raylet/gpus.py)
    gpus: float = 0.0  # how much of them
    busy_since: float = 0.0  # monotonic time its lease was granted or its actor started
    retriable: bool = False  # its task has retries left / its actor restarts left (memory monitor)
    death_note: str = ""  # why the raylet is killing it, when it is (runtime/raylet/oom.py)

    @property
    def pid(self) -> int:
        return self.proc.pid


class WorkerPool:
    def __init__(
        self,
        *,
        node_id: str,
        local_port: int,
        host: str,
        token_file: str,
        log_dir: str,
        shm_dir: str,
        gcs_address: str,
        session_dir: str,
        on_death: Callable[[Worker, int], None],
        record_pid: Callable[[str, int], None],
    ) -> None:
        self.node_id = node_id
        self.local_port = local_port
        self.host = host
        self.token_file = token_file
        self.log_dir = log_dir
        self.shm_dir = shm_dir
        self.gcs_address = gcs_address
        self.session_dir = session_dir
        self.on_death = on_death
        self.record_pid = record_pid
        self.workers: dict[str, Worker] = {}
        self.idle_by_env: dict[str, list[Worker]] = defaultdict(list)
        self._waiters: dict[str, list[asyncio.Future[Worker]]] = defaultdict(list)
        self.starting: dict[str, int] = defaultdict(int)
        # how each runtime_env's workers are set up, and how many died in a row before registering
        self._setups: dict[str, Callable[[], Awaitable[Any]] | None] = {}
        self._early_deaths: dict[str, int] = defaultdict(int)

    @property
    def idle(self) -> list[Worker]:
        return [w for workers in self.idle_by_env.values() for w in workers]

    async def start_worker(self, env_key: str = "", setup: Any = None) -> Worker:
        """Start a worker; `setup` (a runtime_env WorkerSetup) gives its python, env and cwd."""
        worker_id = ids.random_id(6)
        env = dict(os.environ) if setup is None else setup.apply(os.environ)
        env.update(
            {
                "RAYCTL_WORKER_ID": worker_id,
                "RAYCTL_NODE_ID": self.node_id,
                "RAYCTL_NODE_HOST": self.host,
                "RAYCTL_RAYLET_LOCAL_PORT": str(self.local_port),
                "RAYCTL_TOKEN_FILE": self.token_file,
                "RAYCTL_SHM_DIR": self.shm_dir,
                "RAYCTL_GCS_ADDRESS": self.gcs_address,
                "RAYCTL_SESSION_DIR": self.session_dir,
                "RAYCTL_LOG_DIR": self.log_dir,
            }
        )
        env.pop("RAYCTL_TOKEN", None)
        out = open(os.path.join(self.log_dir, f"worker-{worker_id}.out"), "ab")
        err = open(os.path.join(self.log_dir, f"worker-{worker_id}.err"), "ab")
        self.starting[env_key] += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable if setup is None else setup.python,
                "-m",
                "runtime.worker",
                env=env,
                cwd=None if setup is None else setup.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        except BaseException:
            self.starting[env_key] -= 1
            raise
        finally:
            out.close()
            err.close()
        worker = Worker(worker_id, proc, env_key=env_key)
        self.workers[worker_id] = worker
        self.record_pid(f"worker-{worker_id}", proc.pid)
        asyncio.ensure_future(self._watch(worker))
        return worker

    async def _watch(self, worker: Worker) -> None:
        code = await worker.proc.wait()
        worker.dead = True
        early = not worker.registered.done()
        if early:
            self.starting[worker.env_key] -= 1
            worker.registered.set_exception(
                RuntimeError(f"worker exited with code {code} before registering")
            )
            worker.registered.exception()
        self.workers.pop(worker.worker_id, None)
        if worker in self.idle_by_env[worker.env_key]:
            self.idle_by_env[worker.env_key].remove(worker)
        log.info("worker %s (pid %d) exited with code %s", worker.worker_id, worker.pid, code)
        if early:
            self._replace_early_death(worker, code)
        self.on_death(worker, code)

    def _replace_early_death(self, worker: Worker, code: int) -> None:
        """A worker that died before registering was started for someone waiting: start another
        for them (killed by an operator, a chaos test, the OOM killer), unless its runtime_env's
        workers keep dying at start, then hand the waiters the error instead of looping."""
        env_key = worker.env_key
        waiters = [f for f in self._waiters[env_key] if not f.done()]
        self._waiters[env_key] = waiters
        if len(waiters) <= self.starting[env_key]:
            return
        self._early_deaths[env_key] += 1
        if self._early_deaths[env_key] >= MAX_EARLY_DEATHS:
            self._early_deaths[env_key] = 0
            error = RuntimeError(
                f"{MAX_EARLY_DEATHS} workers in a row exited before registering (the last with "
                f"code {code}); see {self.log_dir}/worker-{worker.worker_id}.err"
            )
            for fut in waiters:
                fut.set_exception(error)
            self._waiters[env_key] = []
            return
        log.info("worker %s died before registering; starting another for %d waiting",
                 worker.worker_id, len(waiters) - self.starting[env_key])
        asyncio.ensure_future(self._start_quietly(env_key, self._setups.get(env_key), waiters[0]))

    def on_registered(self, worker_id: str, conn: Connection, address: str) -> Worker | None:
        worker = self.workers.get(worker_id)
        if worker is None:
            return None
        worker.conn = conn
        worker.address = address
        if not worker.registered.done():
            self.starting[worker.env_key] -= 1
            self._early_deaths[worker.env_key] = 0
            worker.registered.set_result(None)
        self.release(worker)
        return worker

    def by_connection(self, conn: Connection) -> Worker | None:
        return next((w for w in self.workers.values() if w.conn is conn), None)

    def release(self, worker: Worker) -> None:
        """Return a worker to the idle list (or hand it to someone waiting)."""
        worker.lease_id = ""
        worker.blocked = False
        worker.owner = None
        if worker.dead or worker.death_note:  # a worker being killed is not handed out again
            return
        waiters = self._waiters[worker.env_key]
        while waiters:
            fut = waiters.pop(0)
            if not fut.done():
                fut.set_result(worker)
                return
        self.idle_by_env[worker.env_key].append(worker)

    async def acquire(self, env_key: str = "", setup: Callable[[], Awaitable[Any]] | None = None) -> Worker:
        """An idle worker of that runtime_env, starting a new one when none is free. `setup`
        prepares the env (download, unpack, pip) before a new worker starts; its error is ours."""
        idle = self.idle_by_env[env_key]
        while idle:
            worker = idle.pop()
            if not worker.dead:
                return worker
        fut: asyncio.Future[Worker] = asyncio.get_event_loop().create_future()
        self._setups[env_key] = setup
        waiters = self._waiters[env_key]
        waiters.append(fut)
        if self.starting[env_key] < len(waiters):
            asyncio.ensure_future(self._start_quietly(env_key, setup, fut))
        return await fut

    async def _start_quietly(self, env_key: str, setup: Callable[[], Awaitable[Any]] | None,
                             fut: asyncio.Future[Worker]) -> None:
        try:
            await self.start_worker(env_key, None if setup is None else await setup())
        except Exception as exc:
            log.warning("could not start a worker: %s", exc)
            if fut in self._waiters[env_key]:
                self._waiters[env_key].remove(fut)
            if not fut.done():
                fut.set_exception(exc)

    def kill(self, worker: Worker, force: bool = True) -> None:
        if worker.dead:
            return
        try:
            worker.proc.kill() if force else worker.proc.terminate()
        except ProcessLookupError:
            pass

    async def shutdown(self, grace_s: float = 1.0) -> None:
        for worker in list(self.workers.values()):
            try:
                worker.proc.terminate()
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        for worker in list(self.workers.values()):
            try:
                await asyncio.wait_for(worker.proc.wait(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                self.kill(worker)
                await worker.proc.wait()

    def stats(self) -> dict[str, Any]:
        return {"workers": len(self.workers), "idle": len(self.idle)}

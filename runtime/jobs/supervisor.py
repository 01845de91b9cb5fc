"""The job supervisor: an actor (one per submitted job, detached, as in Ray) that runs the
entrypoint as a shell command in its own process group (headed by group_leader.py, which takes
the group down if this actor dies) on the node the actor landed on, keeps
its output in the job store as it comes, records RUNNING and the end, and stops it on request
(SIGTERM to the group, SIGKILL after a grace)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from typing import Any

from runtime import worker_context
from runtime.constants import ADDRESS_ENV, JOB_RUNTIME_ENV_ENV, JOB_SUBMISSION_ID_ENV
from runtime.jobs.model import DriverInfo, JobErrorType, JobStatus, Message, now_ms
from runtime.jobs.store import LOG_CHUNK_BYTES, JobStore
from runtime.protocol import gcs_pb2

STOP_GRACE_S = 3.0  # Ray's RAY_JOB_STOP_WAIT_TIME_S default
LOG_FLUSH_S = 0.1  # output reaches the store (and `logs --follow`) within this
FAILED_LOG_TAIL_CHARS = 20_000  # as Ray: a failed job's message ends with its last output
# the group's head: ends the whole group when this supervisor dies (group_leader.py)
GROUP_LEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "group_leader.py")


class JobSupervisor:
    def __init__(self, submission_id: str, entrypoint: str, runtime_env_json: str = "") -> None:
        self.cw = worker_context.current()
        self.store = JobStore(self.cw.gcs_call)
        self.submission_id = submission_id
        self.entrypoint = entrypoint
        self.runtime_env_json = runtime_env_json
        self.proc: asyncio.subprocess.Process | None = None
        self.stopping = False
        self.tail = bytearray()  # the last output, for a failed job's message

    async def run(self) -> str:
        """Run the entrypoint to its end; returns the status recorded."""
        if self.stopping:
            return await self._finish(JobStatus.STOPPED, Message.STOPPED, None)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", GROUP_LEADER, self.entrypoint,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=self._env(), start_new_session=True)
        except OSError as exc:
            return await self._finish(JobStatus.FAILED, f"could not start the entrypoint: {exc}",
                                      None, JobErrorType.JOB_ENTRYPOINT_COMMAND_START_ERROR)
        if self.stopping:  # stop() came while the process was starting
            _signal_group(self.proc.pid, signal.SIGKILL)
        host = self.cw.host
        await self._store(self.store.update, self.submission_id, status=JobStatus.RUNNING,
                          message=Message.RUNNING.value, driver_node_id=self.cw.node_id,
                          driver_info=DriverInfo(id=self.cw.worker_id, node_ip_address=host,
                                                 pid=str(self.proc.pid)))
        pump = asyncio.create_task(self._pump(self.proc))
        code = await self.proc.wait()
        try:  # a grandchild holding the pipe must not hold the job open
            await asyncio.wait_for(pump, 2.0)
        except TimeoutError:
            pass
        if self.stopping:
            return await self._finish(JobStatus.STOPPED, Message.STOPPED, code)
        if code == 0:
            return await self._finish(JobStatus.SUCCEEDED, Message.SUCCEEDED, code)
        last = self.tail.decode(errors="replace")[-FAILED_LOG_TAIL_CHARS:]
        return await self._finish(
            JobStatus.FAILED,
            f"Job entrypoint command failed with exit code {code}, last available logs "
            f"(truncated to {FAILED_LOG_TAIL_CHARS:,} chars):\n{last}",
            code, JobErrorType.JOB_ENTRYPOINT_COMMAND_ERROR)

    async def stop(self) -> bool:
        """SIGTERM the entrypoint's process group, SIGKILL it after the grace."""
        self.stopping = True
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return True
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
        except TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)
        return True

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[ADDRESS_ENV] = self.cw.gcs_address  # init() in the entrypoint joins this cluster
        env[JOB_SUBMISSION_ID_ENV] = self.submission_id
        env["RAY_JOB_SUBMISSION_ID"] = self.submission_id
        env.setdefault("PYTHONUNBUFFERED", "1")  # so `logs --follow` shows prints as they happen
        if self.runtime_env_json:
            env[JOB_RUNTIME_ENV_ENV] = self.runtime_env_json
        return env

    async def _pump(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        seq, buf, last = 0, bytearray(), time.monotonic()
        eof = False
        while not eof:
            try:
                data = await asyncio.wait_for(proc.stdout.read(LOG_CHUNK_BYTES - len(buf)),
                                              LOG_FLUSH_S)
                eof = not data
                buf += data
            except TimeoutError:
                pass
            if buf and (eof or len(buf) >= LOG_CHUNK_BYTES or time.monotonic() - last >= LOG_FLUSH_S):
                chunk = bytes(buf)
                buf.clear()
                await self._store(self.store.append_log, self.submission_id, seq, chunk)
                seq += 1
                self.tail += chunk
                del self.tail[:-FAILED_LOG_TAIL_CHARS * 4]
                last = time.monotonic()

    async def _finish(self, status: JobStatus, message: str, code: int | None,
                      error_type: JobErrorType | None = None) -> str:
        await self._store(self.store.update, self.submission_id, status=status, message=message,
                          end_time=now_ms(), driver_exit_code=code,
                          error_type=error_type.value if error_type else None)
        self._exit_soon()
        return status.value

    def _exit_soon(self) -> None:
        """End this actor once run()'s reply is out: a supervisor lives as long as its job."""
        actor_id = self.cw.current_actor_id

        def kill() -> None:
            time.sleep(0.5)
            try:
                self.cw.gcs_call("KillActor", gcs_pb2.KillActorRequest(actor_id=actor_id,
                                                                        no_restart=True))
            except Exception:  # noqa: BLE001 - the manager also ends finished supervisors
                pass

        threading.Thread(target=kill, daemon=True).start()

    @staticmethod
    async def _store(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass

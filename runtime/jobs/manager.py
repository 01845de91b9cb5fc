"""The head's side of submitted jobs (the web service drives it; tests drive it directly):
submit (record PENDING, then start the job's supervisor actor with the entrypoint's resources,
so a job that needs a GPU waits for one and is demand the autoscaler sees), stop, delete, read
and follow logs, and notice supervisors that died without recording an end. Runs in a driver
connected to the cluster (`init(address=...)`)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from runtime.jobs.model import (
    JobErrorType,
    JobInfo,
    JobStatus,
    JobSubmitRequest,
    Message,
    new_submission_id,
    now_ms,
)
from runtime.jobs.store import JobStore
from runtime.protocol import common_pb2, gcs_pb2
from runtime.runtime_env import KvPackageStore, RuntimeEnvError, validate
from runtime.runtime_env.packages import MAX_PACKAGE_BYTES

log = logging.getLogger("rayctl.jobs")
SUPERVISOR_NAMESPACE = "_rayctl_jobs"
TAIL_POLL_S = 0.1
# Ray's runtime_env.to_dict() adds these; they carry nothing rayctl uses
_RAY_ONLY_ENV_KEYS = ("_ray_commit", "config")
_RAY_PIP_KEYS = ("pip_check", "pip_version")


class JobNotFoundError(LookupError):
    pass


class JobStateError(ValueError):
    """The job is not in a state that allows this (e.g. delete while it runs)."""


def supervisor_name(submission_id: str) -> str:
    return f"_rayctl_job_supervisor:{submission_id}"


class JobManager:
    def __init__(self, gcs_call: Any) -> None:
        self._call = gcs_call
        self.store = JobStore(gcs_call)
        self.packages = KvPackageStore.over_gcs(gcs_call)

    # -- submit ---------------------------------------------------------------------------
    def submit(self, request: JobSubmitRequest) -> str:
        """Record the job and start its supervisor; ValueError (with the fix) for a bad request,
        JobExistsError for a submission id already used."""
        import runtime as rt
        from runtime.jobs.supervisor import JobSupervisor

        env = self.runtime_env(request.runtime_env)
        sid = request.submission_id or request.job_id or new_submission_id()
        job = JobInfo(submission_id=sid, entrypoint=request.entrypoint,
                      message=Message.PENDING.value, start_time=now_ms(),
                      metadata=request.metadata, runtime_env=request.runtime_env,
                      entrypoint_num_cpus=request.entrypoint_num_cpus,
                      entrypoint_num_gpus=request.entrypoint_num_gpus,
                      entrypoint_memory=request.entrypoint_memory,
                      entrypoint_resources=request.entrypoint_resources,
                      extra=request.extra_keys())
        self._check_feasible(job)
        self.store.create(job)
        options: dict[str, Any] = dict(
            name=supervisor_name(sid), namespace=SUPERVISOR_NAMESPACE, lifetime="detached",
            max_restarts=0, num_cpus=job.entrypoint_num_cpus or 0,
            num_gpus=job.entrypoint_num_gpus or 0, max_concurrency=10)
        if job.entrypoint_memory:
            options["memory"] = job.entrypoint_memory
        if job.entrypoint_resources:
            options["resources"] = job.entrypoint_resources
        if env:
            options["runtime_env"] = env
        try:
            actor = rt.remote(JobSupervisor).options(**options).remote(
                sid, request.entrypoint, json.dumps(env) if env else "")
            actor.run.remote()
        except Exception as exc:  # noqa: BLE001 - recorded on the job, then re-raised
            self.store.update(sid, status=JobStatus.FAILED, end_time=now_ms(),
                              message=f"could not start the job's supervisor: {exc}",
                              error_type=JobErrorType.JOB_SUPERVISOR_ACTOR_START_FAILURE.value)
            raise
        return sid

    def runtime_env(self, raw: dict[str, Any] | None) -> dict[str, Any]:
        """A request's runtime_env as this cluster runs it: Ray's package URIs mapped to the
        packages uploaded here, Ray-only bookkeeping keys dropped, then validated."""
        if not raw:
            return {}
        env = {k: v for k, v in raw.items() if k not in _RAY_ONLY_ENV_KEYS}
        pip = env.get("pip")
        if isinstance(pip, dict):
            env["pip"] = {k: v for k, v in pip.items() if k not in _RAY_PIP_KEYS}
        if "working_dir" in env:
            env["working_dir"] = self._package_uri(env["working_dir"], "working_dir")
        if isinstance(env.get("py_modules"), list):
            env["py_modules"] = [self._package_uri(m, "py_modules") for m in env["py_modules"]]
        try:
            validate(env)
        except RuntimeEnvError as exc:
            raise ValueError(str(exc)) from None
        return env

    def _package_uri(self, value: Any, key: str) -> str:
        """An uploaded package's URI here; a path (it would name a directory of the head, not
        of the client's machine) or an unknown package is refused."""
        if not isinstance(value, str) or not value.startswith("gcs://"):
            raise ValueError(f"runtime_env[{key!r}] {value!r} is not an uploaded package: the "
                             "client uploads local directories first (Ray's client and `rayctl "
                             "job submit --working-dir` do)")
        ours = self.packages.resolve_alias(value)
        if ours is None:
            raise ValueError(f"package {value} was not uploaded to this cluster: upload it first "
                             "(PUT /api/packages/gcs/<name>), as Ray's client does")
        return ours

    def _check_feasible(self, job: JobInfo) -> None:
        shape = job.resources()
        if not shape:
            return
        reply = self._call("CheckFeasible", gcs_pb2.FeasibleRequest(shape=shape))
        if not (reply.fits_a_node or reply.fits_launchable):
            raise ValueError(f"no node of this cluster, nor any node type the autoscaler may "
                             f"launch, has {shape}: lower the entrypoint's resources "
                             "or add a node type that has them")

    # -- packages (Ray's working_dir / py_modules uploads) ------------------------------------
    def package_exists(self, uri: str) -> bool:
        return self.packages.resolve_alias(uri) is not None

    def upload_package(self, uri: str, data: bytes) -> str:
        """Keep a zip the client made (Ray's `_ray_pkg_<hash>.zip`); returns its URI here."""
        import io
        import zipfile

        if len(data) > MAX_PACKAGE_BYTES:
            raise ValueError(f"package {uri} is {len(data) >> 20} MiB; the limit is "
                             f"{MAX_PACKAGE_BYTES >> 20} MiB (exclude data files with "
                             "runtime_env['excludes'])")
        try:
            zipfile.ZipFile(io.BytesIO(data)).testzip()
        except zipfile.BadZipFile:
            raise ValueError(f"package {uri} is not a zip file") from None
        try:
            return self.packages.upload_aliased(uri, data)
        except RuntimeEnvError as exc:
            raise ValueError(str(exc)) from None

    # -- reading ----------------------------------------------------------------------------
    def get(self, submission_id: str) -> JobInfo:
        job = self.store.get(submission_id)
        if job is None:
            raise JobNotFoundError(f"Job {submission_id} does not exist")
        return job

    def jobs(self) -> list[JobInfo]:
        return self.store.all()

    def logs(self, submission_id: str) -> str:
        self.get(submission_id)
        data, _ = self.store.read_log(submission_id)
        return data.decode(errors="replace")

    async def tail(self, submission_id: str) -> AsyncIterator[str]:
        """The job's output as it comes, from its start, ending when the job has ended and all
        of it was sent."""
        await asyncio.to_thread(self.get, submission_id)
        seq: int | None = None
        while True:
            job = await asyncio.to_thread(self.store.get, submission_id)
            data, seq = await asyncio.to_thread(self.store.read_log, submission_id, seq)
            if data:
                yield data.decode(errors="replace")
            if job is None or job.status.terminal:
                return  # the end was recorded before this read: nothing more will come
            await asyncio.sleep(TAIL_POLL_S)

    # -- acting -------------------------------------------------------------------------------
    def stop(self, submission_id: str) -> bool:
        """Ask the supervisor to stop the entrypoint; False when the job had already ended."""
        import runtime as rt

        job = self.get(submission_id)
        if job.status.terminal:
            return False
        actor = self._supervisor(submission_id)
        if actor is not None and actor.state == common_pb2.ActorInfo.ALIVE:
            handle = rt.get_actor(supervisor_name(submission_id), SUPERVISOR_NAMESPACE)
            try:
                rt.get(handle.stop.remote(), timeout=30)
                return True
            except Exception as exc:  # noqa: BLE001 - it died meanwhile: recorded below
                log.warning("stopping %s through its supervisor failed: %s", submission_id, exc)
        # no live supervisor (it waits for resources, or died): end the job here
        if actor is not None and actor.state != common_pb2.ActorInfo.DEAD:
            self._call("KillActor", gcs_pb2.KillActorRequest(actor_id=actor.actor_id,
                                                               no_restart=True))
        self.store.update(submission_id, status=JobStatus.STOPPED, message=Message.STOPPED.value,
                          end_time=now_ms())
        return True

    def delete(self, submission_id: str) -> bool:
        job = self.get(submission_id)
        if not job.status.terminal:
            raise JobStateError(f"Attempted to delete job with submission_id {submission_id}, "
                                f"but it is in the non-terminal state {job.status.value}: "
                                "stop it first")
        return self.store.delete(submission_id)

    def check_supervisors(self) -> list[str]:
        """One pass of the watch: a job whose supervisor is gone without recording an end
        failed (its node died, its worker was killed). Returns the jobs so ended."""
        ended = []
        for job in self.store.all():
            if job.status.terminal:
                continue
            actor = self._supervisor(job.submission_id)
            if actor is not None and actor.state != common_pb2.ActorInfo.DEAD:
                continue
            reason = actor.death_cause if actor is not None and actor.death_cause else "it is gone"
            if self.store.update(job.submission_id, status=JobStatus.FAILED, end_time=now_ms(),
                                 message=f"Job supervisor actor died: {reason}",
                                 error_type=JobErrorType.JOB_SUPERVISOR_ACTOR_DIED.value):
                ended.append(job.submission_id)
        return ended

    def _supervisor(self, submission_id: str) -> Any:
        reply = self._call("GetActor", gcs_pb2.GetActorRequest(
            name=supervisor_name(submission_id), namespace=SUPERVISOR_NAMESPACE))
        return reply.actor if reply.found else None

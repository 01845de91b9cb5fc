"""The records of submitted jobs, in the field names and values of Ray 2.60's Jobs API
(`ray.dashboard.modules.job.common` / `pydantic_models`): what `POST /api/jobs/` takes and what
`GET /api/jobs/{id}` answers. Times are unix milliseconds, as in Ray."""

from __future__ import annotations

import enum
import math
import re
import secrets
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runtime.gcs.schema import JobRecord

# Ray's alphabet for submission ids: letters and digits without the confusable I, l, o, O, 0.
_ID_ALPHABET = "".join(sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ123456789")
                              - {"I", "l", "o", "O", "0"}))
SUBMISSION_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
MAX_ENTRYPOINT_CHARS = 64 * 1024


class JobStatus(enum.StrEnum):
    PENDING = "PENDING"  # the supervisor waits for a node that fits the entrypoint's resources
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"  # stopped by the user
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


class JobType(enum.StrEnum):
    SUBMISSION = "SUBMISSION"
    DRIVER = "DRIVER"


class JobErrorType(enum.StrEnum):
    """Ray's `JobErrorType` values, for `error_type`."""

    JOB_ENTRYPOINT_COMMAND_ERROR = "JOB_ENTRYPOINT_COMMAND_ERROR"
    JOB_ENTRYPOINT_COMMAND_START_ERROR = "JOB_ENTRYPOINT_COMMAND_START_ERROR"
    JOB_SUPERVISOR_ACTOR_START_FAILURE = "JOB_SUPERVISOR_ACTOR_START_FAILURE"
    JOB_SUPERVISOR_ACTOR_DIED = "JOB_SUPERVISOR_ACTOR_DIED"


class Message(enum.StrEnum):
    PENDING = ("Job has not started yet. It may be waiting for resources (CPUs, GPUs, memory, "
               "custom resources) to become available. It may be waiting for the runtime "
               "environment to be set up.")
    RUNNING = "Job is currently running."
    SUCCEEDED = "Job finished successfully."
    STOPPED = "Job was intentionally stopped."


def new_submission_id() -> str:
    """`raysubmit_` and 16 random characters, as Ray makes them."""
    return "raysubmit_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def now_ms() -> int:
    return int(time.time() * 1000)


def _amount(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


class JobSubmitRequest(BaseModel):
    """`POST /api/jobs/`'s body. Keys this version does not know (Ray adds some in each
    release: `entrypoint_label_selector`, ...) are kept, and shown back with the job."""

    model_config = ConfigDict(extra="allow")

    entrypoint: str
    submission_id: str | None = None
    job_id: str | None = None  # Ray's old name for submission_id
    runtime_env: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: dict[str, float] | None = None

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("entrypoint is empty: give the shell command to run, e.g. "
                             "'python script.py'")
        if len(value) > MAX_ENTRYPOINT_CHARS:
            raise ValueError(f"entrypoint is {len(value)} characters; the limit is "
                             f"{MAX_ENTRYPOINT_CHARS} (put long commands in a script)")
        return value

    @field_validator("submission_id", "job_id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not SUBMISSION_ID_RE.match(value):
            raise ValueError(f"submission_id {value!r} must be 1 to 128 letters, digits, '_', "
                             "'.' or '-'")
        return value

    @field_validator("entrypoint_num_cpus", "entrypoint_num_gpus", mode="before")
    @classmethod
    def _count(cls, value: Any, info: Any) -> float | None:
        return _amount(value, info.field_name)

    @field_validator("entrypoint_memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> int | None:
        amount = _amount(value, "entrypoint_memory")
        return None if amount is None else int(amount)

    @field_validator("entrypoint_resources", mode="before")
    @classmethod
    def _resources(cls, value: Any) -> dict[str, float] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError(f"entrypoint_resources must be an object of numbers, got {value!r}")
        out = {}
        for name, amount in value.items():
            if name in ("CPU", "GPU", "memory"):
                raise ValueError(f"entrypoint_resources may not name {name!r}: use "
                                 f"entrypoint_num_cpus / entrypoint_num_gpus / entrypoint_memory")
            checked = _amount(amount, f"entrypoint_resources[{name!r}]")
            assert checked is not None
            out[str(name)] = checked
        return out

    def extra_keys(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class DriverInfo(BaseModel):
    id: str
    node_ip_address: str
    pid: str


INTERNAL_NAMESPACE_PREFIX = "_rayctl"  # the web service's own driver and the like: not listed


def driver_details(job_id: str, record: JobRecord) -> dict[str, Any]:
    """A driver that called init() (not submitted), as Ray's JobDetails of type DRIVER."""
    host = record["driver_address"].rpartition(":")[0]
    end = record["end"]
    return {
        "type": JobType.DRIVER.value, "job_id": job_id, "submission_id": None,
        "driver_info": {"id": job_id, "node_ip_address": host, "pid": str(record["driver_pid"])},
        "status": (JobStatus.RUNNING if end is None else JobStatus.SUCCEEDED).value,
        "entrypoint": "", "message": None, "error_type": None,
        "start_time": int(record["start"] * 1000),
        "end_time": None if end is None else int(end * 1000),
        "metadata": {}, "runtime_env": {}, "driver_agent_http_address": None,
        "driver_node_id": None, "driver_exit_code": None,
    }


class JobInfo(BaseModel):
    """One submission's record: Ray's JobDetails fields (its `type` is always SUBMISSION
    here), plus what Ray's request had that this version does not know (`extra`)."""

    submission_id: str
    entrypoint: str
    status: JobStatus = JobStatus.PENDING
    message: str | None = None
    error_type: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    metadata: dict[str, str] | None = None
    runtime_env: dict[str, Any] | None = None
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: dict[str, float] | None = None
    driver_agent_http_address: str | None = None
    driver_node_id: str | None = None
    driver_exit_code: int | None = None
    driver_info: DriverInfo | None = None
    job_id: str | None = None  # the driver's job id, once the entrypoint called init()
    extra: dict[str, Any] = Field(default_factory=dict)

    def resources(self) -> dict[str, float]:
        """The entrypoint's reservation, as actor options."""
        out = dict(self.entrypoint_resources or {})
        if self.entrypoint_num_cpus:
            out["CPU"] = self.entrypoint_num_cpus
        if self.entrypoint_num_gpus:
            out["GPU"] = self.entrypoint_num_gpus
        if self.entrypoint_memory:
            out["memory"] = float(self.entrypoint_memory)
        return out

    def details(self) -> dict[str, Any]:
        """The JSON Ray's client reads (JobDetails), with the unknown request keys echoed."""
        out = self.model_dump(mode="json", exclude={"extra"})
        out["type"] = JobType.SUBMISSION.value
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

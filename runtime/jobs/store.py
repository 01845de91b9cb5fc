"""Where submitted jobs live: the GCS's internal KV (so a restarted web service, or a supervisor
on any node, reads and writes the same records). This module owns the keys:

  kv:job_submission  <submission_id>        -> JobInfo JSON
  kv:job_logs        <submission_id>/<seq>  -> a chunk of the entrypoint's output (bytes)
                     <submission_id>/first  -> the first chunk still kept (older ones dropped)

Output is kept up to MAX_LOG_CHUNKS chunks of at most LOG_CHUNK_BYTES; beyond that the oldest
chunks are dropped and the log says so where it starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.gcs.schema import KvNamespace
from runtime.jobs.model import JobInfo
from runtime.protocol import gcs_pb2

LOG_CHUNK_BYTES = 128 * 1024
MAX_LOG_CHUNKS = 256  # 32 MiB of output per job
GcsCall = Callable[..., Any]


class JobExistsError(ValueError):
    """A job with this submission id was already submitted."""


class JobStore:
    def __init__(self, gcs_call: GcsCall) -> None:
        self._call = gcs_call

    # -- records --------------------------------------------------------------------------
    def create(self, job: JobInfo) -> None:
        """Record a new job; JobExistsError when its submission id is taken."""
        reply = self._call("KvPut", gcs_pb2.KvRequest(
            ns=KvNamespace.JOBS, key=job.submission_id,
            value=job.model_dump_json().encode(), overwrite=False))
        if not reply.written:
            raise JobExistsError(f"job with submission_id {job.submission_id!r} already exists; "
                                 "pick another submission_id, or delete the old job first")

    def put(self, job: JobInfo) -> None:
        self._call("KvPut", gcs_pb2.KvRequest(
            ns=KvNamespace.JOBS, key=job.submission_id,
            value=job.model_dump_json().encode(), overwrite=True))

    def get(self, submission_id: str) -> JobInfo | None:
        reply = self._call("KvGet", gcs_pb2.KvRequest(ns=KvNamespace.JOBS, key=submission_id))
        return JobInfo.model_validate_json(reply.value) if reply.found else None

    def ids(self) -> list[str]:
        return list(self._call("KvKeys", gcs_pb2.KvRequest(ns=KvNamespace.JOBS, key="")).keys)

    def all(self) -> list[JobInfo]:
        jobs = [self.get(sid) for sid in self.ids()]
        return sorted((j for j in jobs if j is not None), key=lambda j: (j.start_time or 0,
                                                                         j.submission_id))

    def update(self, submission_id: str, **changes: Any) -> JobInfo | None:
        """Apply `changes` unless the job already ended (an end is never overwritten: the first
        of the supervisor and the manager to record one wins). Returns the record as written,
        or None when the job is gone or had ended."""
        job = self.get(submission_id)
        if job is None or job.status.terminal:
            return None
        job = job.model_copy(update=changes)
        self.put(job)
        return job

    def delete(self, submission_id: str) -> bool:
        reply = self._call("KvDel", gcs_pb2.KvRequest(ns=KvNamespace.JOBS, key=submission_id))
        self._drop_logs(submission_id)
        return bool(reply.found)

    # -- logs -----------------------------------------------------------------------------
    def append_log(self, submission_id: str, seq: int, chunk: bytes) -> None:
        """Write chunk number `seq` (the writer counts from 0); drop the oldest beyond the cap."""
        self._call("KvPut", gcs_pb2.KvRequest(ns=KvNamespace.JOB_LOGS,
                                              key=_chunk_key(submission_id, seq), value=chunk,
                                              overwrite=True))
        old = seq - MAX_LOG_CHUNKS
        if old >= 0:
            self._call("KvPut", gcs_pb2.KvRequest(ns=KvNamespace.JOB_LOGS,
                                                  key=f"{submission_id}/first",
                                                  value=str(old + 1).encode(), overwrite=True))
            self._call("KvDel", gcs_pb2.KvRequest(ns=KvNamespace.JOB_LOGS,
                                                  key=_chunk_key(submission_id, old)))

    def first_log_chunk(self, submission_id: str) -> int:
        reply = self._call("KvGet", gcs_pb2.KvRequest(ns=KvNamespace.JOB_LOGS,
                                                      key=f"{submission_id}/first"))
        return int(reply.value) if reply.found else 0

    def log_chunk(self, submission_id: str, seq: int) -> bytes | None:
        reply = self._call("KvGet", gcs_pb2.KvRequest(ns=KvNamespace.JOB_LOGS,
                                                      key=_chunk_key(submission_id, seq)))
        return bytes(reply.value) if reply.found else None

    def read_log(self, submission_id: str, start: int | None = None) -> tuple[bytes, int]:
        """The output from chunk `start` (default: the oldest kept) to the newest written, and
        the number of the next chunk to read. A log whose head was dropped says so first."""
        first = self.first_log_chunk(submission_id)
        seq = max(first, start or 0)
        parts = []
        if (start or 0) < first:
            parts.append(f"[rayctl: the first {first} chunks ({first * LOG_CHUNK_BYTES >> 20} MiB)"
                         " of this job's output were dropped to keep its log bounded]\n".encode())
        while (chunk := self.log_chunk(submission_id, seq)) is not None:
            parts.append(chunk)
            seq += 1
        return b"".join(parts), seq

    def _drop_logs(self, submission_id: str) -> None:
        prefix = f"{submission_id}/"
        keys = self._call("KvKeys", gcs_pb2.KvRequest(ns=KvNamespace.JOB_LOGS, key=prefix)).keys
        for key in keys:
            self._call("KvDel", gcs_pb2.KvRequest(ns=KvNamespace.JOB_LOGS, key=key))


def _chunk_key(submission_id: str, seq: int) -> str:
    return f"{submission_id}/{seq:08d}"

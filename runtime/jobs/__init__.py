"""Submitted jobs, as Ray's Jobs API runs them: a record per submission in the GCS KV
(`store.py`), an entrypoint run by a supervisor actor on some node (`supervisor.py`), its
output kept in the KV in chunks, and the manager the head's web service drives (`manager.py`).
The wire shapes are Ray's (`model.py`), so Ray's own JobSubmissionClient works."""

from runtime.jobs.model import JobInfo, JobStatus, JobSubmitRequest, JobType, new_submission_id

__all__ = ["JobInfo", "JobStatus", "JobSubmitRequest", "JobType", "new_submission_id"]

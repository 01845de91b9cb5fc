"""Runs in Ray's venv: Ray 2.60's own JobSubmissionClient against a job server (ours or Ray's),
first checking each call Ray users make, then timing submit -> RUNNING and a burst of jobs.
Prints one JSON line (the last line of stdout). Usage: jobs_client.py URL [TOKEN]"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time

from ray.job_submission import JobStatus, JobSubmissionClient

URL = sys.argv[1]
TOKEN = sys.argv[2] if len(sys.argv) > 2 else ""
LATENCY_JOBS = int(os.environ.get("JOBS_LATENCY_N", "20"))
BURST_JOBS = int(os.environ.get("JOBS_BURST_N", "100"))
DEADLINE_S = 600
TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}


def wait_for(client: JobSubmissionClient, sid: str, statuses: set[JobStatus],
             poll_s: float = 0.005) -> float:
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        if client.get_job_status(sid) in statuses:
            return time.perf_counter()
        time.sleep(poll_s)
    raise TimeoutError(f"{sid} never reached {statuses}")


def check_calls(client: JobSubmissionClient) -> list[str]:
    """What a Ray user does, each call checked; returns what worked."""
    done = []
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "job.py"), "w") as f:
            f.write("import time\nfor i in range(3):\n    print('tick', i, flush=True)\n"
                    "    time.sleep(0.2)\n")
        sid = client.submit_job(entrypoint="python job.py", runtime_env={"working_dir": work},
                                metadata={"bench": "jobs"})
        done.append("submit with working_dir upload")

        async def tail() -> str:
            return "".join([lines async for lines in client.tail_job_logs(sid)])
        followed = asyncio.run(asyncio.wait_for(tail(), DEADLINE_S))
        assert "tick 0" in followed and "tick 2" in followed, followed
        done.append("tail_job_logs")
        wait_for(client, sid, TERMINAL)
        info = client.get_job_info(sid)
        assert info.status == JobStatus.SUCCEEDED, info.message
        assert info.metadata.get("bench") == "jobs", info.metadata
        done.append("get_job_info")
        assert "tick 1" in client.get_job_logs(sid)
        done.append("get_job_logs")
    sid = client.submit_job(entrypoint="sleep 60")
    wait_for(client, sid, {JobStatus.RUNNING})
    assert client.stop_job(sid) is True
    wait_for(client, sid, {JobStatus.STOPPED})
    done.append("stop_job")
    assert sid in [j.submission_id for j in client.list_jobs()]
    done.append("list_jobs")
    assert client.delete_job(sid) is True
    done.append("delete_job")
    return done


def latency(client: JobSubmissionClient) -> dict[str, float]:
    running, ended = [], []
    for _ in range(LATENCY_JOBS):
        start = time.perf_counter()
        sid = client.submit_job(entrypoint="echo hi")
        running.append(wait_for(client, sid, {JobStatus.RUNNING} | TERMINAL) - start)
        ended.append(wait_for(client, sid, TERMINAL) - start)
    return {"submit_to_running_ms_p50": statistics.median(running) * 1000,
            "submit_to_running_ms_max": max(running) * 1000,
            "submit_to_succeeded_ms_p50": statistics.median(ended) * 1000}


def burst(client: JobSubmissionClient) -> dict[str, float]:
    start = time.perf_counter()
    ids = [client.submit_job(entrypoint="echo hi") for _ in range(BURST_JOBS)]
    submitted = time.perf_counter() - start
    end = time.monotonic() + DEADLINE_S
    pending = set(ids)
    while pending and time.monotonic() < end:
        pending = {sid for sid in pending if client.get_job_status(sid) not in TERMINAL}
        time.sleep(0.05)
    total = time.perf_counter() - start
    failed = sum(1 for sid in ids if client.get_job_status(sid) != JobStatus.SUCCEEDED)
    return {"burst_jobs": BURST_JOBS, "burst_submit_s": submitted, "burst_all_done_s": total,
            "burst_not_succeeded": failed + len(pending)}


def main() -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else None
    client = JobSubmissionClient(URL, headers=headers)
    out: dict[str, object] = {"calls": check_calls(client)}
    out.update(latency(client))
    out.update(burst(client))
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Submitted jobs through the head's web service, as a Ray user drives them: a real head
(`rayctl start --head`: Redis, GCS, raylet, the web service under the supervisor), every route
of Ray's Jobs REST API over HTTP, the token on every route, `rayctl job`, `rayctl list` and
`rayctl summary` (tasks and objects included), metrics, and running jobs surviving a restart of
the web service."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import aiohttp
import psutil
import pytest
from web_head import DEADLINE_S, Head, rayctl, wait

from autoscaler.web.server import read_web_file


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    temp_dir = str(tmp_path_factory.mktemp("jobs") / "rayctl")
    started = rayctl(temp_dir, "start", "--head", "--num-cpus", "2", "--dashboard-port", "0")
    try:
        assert started.returncode == 0, started.stderr
        assert "web service: http://127.0.0.1:" in started.stdout
        yield Head(temp_dir)
    finally:
        stopped = rayctl(temp_dir, "stop")
        assert stopped.returncode == 0, stopped.stderr


def test_every_route_needs_the_token(head: Head) -> None:
    routes = [("GET", "/api/version"), ("GET", "/api/jobs/"), ("POST", "/api/jobs/"),
              ("GET", "/api/jobs/x"), ("GET", "/api/jobs/x/logs"), ("POST", "/api/jobs/x/stop"),
              ("DELETE", "/api/jobs/x"), ("GET", "/api/packages/gcs/x.zip"),
              ("PUT", "/api/packages/gcs/x.zip"), ("GET", "/metrics"), ("GET", "/api/state/nodes"),
              ("GET", "/"), ("GET", "/api/jobs/x/logs/tail")]
    for method, path in routes:
        for token in (None, "not-the-token"):
            status, body = head.call(method, path, token=token)
            assert status == 401, (method, path, status)
            assert "Bearer" in body and "job" not in body.lower().replace("jobs", "")
    status, page = head.call("GET", "/login", token=None)
    assert status == 200 and "<form" in page


def test_login_page_sets_a_session_cookie(head: Head) -> None:
    async def go() -> tuple[int, int, int]:
        # unsafe: aiohttp keeps cookies of IP-address hosts only when told to (browsers do)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.post(head.url + "/login", data={"token": "wrong", "next": "/"}) as r:
                bad = r.status
            async with s.post(head.url + "/login", data={"token": head.token,
                                                          "next": "//evil.example/"},
                              allow_redirects=False) as r:
                assert r.headers["Location"] == "/"  # never a redirect off this service
                login = r.status
            async with s.get(head.url + "/api/jobs/") as r:
                return bad, login, r.status
    assert asyncio.run(go()) == (401, 303, 200)


def test_version_as_rays_client_reads_it(head: Head) -> None:
    status, body = head.call("GET", "/api/version")
    assert status == 200
    # Ray's client needs Jobs API version 4 and a Ray version of at least 2.8 (entrypoint_memory)
    assert body["version"] == "4"
    assert tuple(int(p) for p in body["ray_version"].split(".")) >= (2, 8)


def test_submit_follow_logs_and_succeed(head: Head) -> None:
    sid = head.submit(entrypoint="echo hello; sleep 0.3; echo world >&2",
                      metadata={"owner": "test"}, entrypoint_label_selector={"zone": "a"},
                      entrypoint_memory=1)
    done = head.wait_status(sid, "SUCCEEDED", "FAILED")
    assert done["status"] == "SUCCEEDED", done["message"]
    assert done["driver_exit_code"] == 0 and done["end_time"] >= done["start_time"]
    assert done["metadata"] == {"owner": "test"} and done["type"] == "SUBMISSION"
    assert done["entrypoint_label_selector"] == {"zone": "a"}  # an unknown key kept
    status, logs = head.call("GET", f"/api/jobs/{sid}/logs")
    assert status == 200 and logs["logs"] == "hello\nworld\n"
    status, listed = head.call("GET", "/api/jobs/")
    assert sid in [j["submission_id"] for j in listed]


def test_a_driver_in_the_job_uses_the_cluster(head: Head) -> None:
    script = ("import runtime as rt; rt.init(); f = rt.remote(lambda x: x * 2); "
              "print('sum', sum(rt.get([f.remote(i) for i in range(10)])))")
    sid = head.submit(entrypoint=f"{sys.executable} -c \"{script}\"",
                      runtime_env={"env_vars": {"GREETING": "hi"}})
    done = head.wait_status(sid, "SUCCEEDED", "FAILED")
    assert done["status"] == "SUCCEEDED", done["message"]
    assert "sum 90" in head.call("GET", f"/api/jobs/{sid}/logs")[1]["logs"]
    assert done["job_id"]  # its entrypoint's driver, as Ray links them
    # a driver that called init() itself is listed too, as Ray lists it (type DRIVER)
    env = dict(os.environ, RAYCTL_TEMP_DIR=head.temp_dir)
    env.pop("RAYCTL_TOKEN_FILE", None)
    own = subprocess.run([sys.executable, "-c", "import runtime as rt; rt.init(address='auto'); "
                          "print(rt.get_runtime_context().get_job_id())"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert own.returncode == 0, own.stderr
    listed = head.call("GET", "/api/jobs/")[1]
    drivers = [j for j in listed if j["type"] == "DRIVER"]
    assert own.stdout.strip() in [j["job_id"] for j in drivers]
    assert done["job_id"] not in [j["job_id"] for j in drivers]  # listed once, as the submission
    assert all(j["driver_info"]["pid"] and j["submission_id"] is None for j in drivers)


def test_failed_job_says_why(head: Head) -> None:
    sid = head.submit(entrypoint="echo about to fail; exit 3")
    done = head.wait_status(sid, "FAILED", "SUCCEEDED")
    assert done["status"] == "FAILED" and done["driver_exit_code"] == 3
    assert done["error_type"] == "JOB_ENTRYPOINT_COMMAND_ERROR"
    assert "exit code 3" in done["message"] and "about to fail" in done["message"]


def test_tail_follows_until_the_end(head: Head) -> None:
    sid = head.submit(entrypoint="for i in 1 2 3; do echo line $i; sleep 0.2; done")

    async def follow() -> str:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {head.token}"}) as s:
            async with s.ws_connect(f"{head.url}/api/jobs/{sid}/logs/tail") as ws:
                parts = [m.data async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
                return "".join(parts)
    assert asyncio.run(asyncio.wait_for(follow(), DEADLINE_S)) == "line 1\nline 2\nline 3\n"
    assert head.job(sid)["status"] == "SUCCEEDED"


def test_stop_ends_the_whole_process_group(head: Head) -> None:
    sid = head.submit(entrypoint="sleep 300 & echo child $!; wait")
    head.wait_status(sid, "RUNNING")
    logs = wait("the child's pid", lambda: head.call("GET", f"/api/jobs/{sid}/logs")[1]["logs"])
    child = int(logs.split()[-1])
    status, reply = head.call("POST", f"/api/jobs/{sid}/stop")
    assert status == 200 and reply == {"stopped": True}
    assert head.wait_status(sid, "STOPPED")["message"] == "Job was intentionally stopped."
    wait("the background child to die", lambda: not psutil.pid_exists(child)
          or psutil.Process(child).status() == psutil.STATUS_ZOMBIE)
    assert head.call("POST", f"/api/jobs/{sid}/stop")[1] == {"stopped": False}


def test_delete_only_ended_jobs(head: Head) -> None:
    sid = head.submit(entrypoint="sleep 30")
    head.wait_status(sid, "RUNNING")
    status, text = head.call("DELETE", f"/api/jobs/{sid}")
    assert status == 400 and "non-terminal state RUNNING" in text
    head.call("POST", f"/api/jobs/{sid}/stop")
    head.wait_status(sid, "STOPPED")
    assert head.call("DELETE", f"/api/jobs/{sid}") == (200, {"deleted": True})
    assert head.call("GET", f"/api/jobs/{sid}")[0] == 404
    assert head.call("GET", f"/api/jobs/{sid}/logs")[0] == 404


def test_bad_requests_get_one_line_and_change_nothing(head: Head) -> None:
    before = len(head.call("GET", "/api/jobs/")[1])
    bad = [{"entrypoint": ""}, {"entrypoint": "x", "entrypoint_num_cpus": -1},
           {"entrypoint": "x", "entrypoint_num_gpus": float("inf")},
           {"entrypoint": "x", "runtime_env": {"conda": "env"}},
           {"entrypoint": "x", "submission_id": "a/b"},
           {"entrypoint": "x", "entrypoint_resources": {"TPU": 4}},  # nothing here has one
           {"entrypoint": "x", "runtime_env": {"working_dir": "gcs://_ray_pkg_nothere.zip"}}]
    for body in bad:
        status, text = head.call("POST", "/api/jobs/", data=json.dumps(body).replace(
            "Infinity", "1e999"), headers={"Content-Type": "application/json"})
        assert status == 400, (body, status, text)
        assert "\n" not in text.strip(), text
    assert head.call("POST", "/api/jobs/", data=b"not json")[0] == 400
    assert head.call("POST", "/api/jobs/", data=b"x" * (2 << 20))[0] == 413
    sid = head.submit(entrypoint="true", submission_id="only-once")
    status, text = head.call("POST", "/api/jobs/", json={"entrypoint": "true",
                                                         "submission_id": sid})
    assert status == 400 and "already exists" in text
    assert len(head.call("GET", "/api/jobs/")[1]) == before + 1


def test_working_dir_uploaded_as_rays_client_does(head: Head, tmp_path: Any) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.py", "print('from the working dir')\n")
    name = "_ray_pkg_0123456789abcdef.zip"
    assert head.call("GET", f"/api/packages/gcs/{name}")[0] == 404
    assert head.call("PUT", f"/api/packages/gcs/{name}", data=b"not a zip")[0] == 400
    assert head.call("PUT", f"/api/packages/gcs/{name}", data=buf.getvalue())[0] == 200
    assert head.call("GET", f"/api/packages/gcs/{name}")[0] == 200
    sid = head.submit(entrypoint=f"{sys.executable} hello.py",
                      runtime_env={"working_dir": f"gcs://{name}", "_ray_commit": "x",
                                   "pip": {"packages": [], "pip_check": False}})
    done = head.wait_status(sid, "SUCCEEDED", "FAILED")
    assert done["status"] == "SUCCEEDED", done["message"]
    assert head.call("GET", f"/api/jobs/{sid}/logs")[1]["logs"] == "from the working dir\n"


def test_job_waiting_for_resources_is_pending_then_runs(head: Head) -> None:
    blocker = head.submit(entrypoint="sleep 30", entrypoint_num_cpus=2)
    head.wait_status(blocker, "RUNNING")
    sid = head.submit(entrypoint="echo ran", entrypoint_num_cpus=1)
    time.sleep(0.5)  # a moment in which it could wrongly start
    pending = head.job(sid)
    assert pending["status"] == "PENDING" and "waiting for resources" in pending["message"]
    status, metrics = head.call("GET", "/metrics")
    assert status == 200 and 'rayctl_pending_demand{kind="actor",shape="{\\"CPU\\":1.0}"} 1.0' in metrics
    head.call("POST", f"/api/jobs/{blocker}/stop")
    assert head.wait_status(sid, "SUCCEEDED", "FAILED")["status"] == "SUCCEEDED"


def test_jobs_keep_running_when_the_web_service_restarts(head: Head) -> None:
    sid = head.submit(entrypoint="sleep 2; echo survived")
    head.wait_status(sid, "RUNNING")
    web_pid = json.load(open(os.path.join(head.session_dir, "web.json")))["pid"]
    os.kill(web_pid, signal.SIGKILL)
    wait("a new web service", lambda: (w := read_web_file(head.session_dir)) and
          w["pid"] != web_pid)
    head.url = read_web_file(head.session_dir)["url"]
    done = head.wait_status(sid, "SUCCEEDED", "FAILED")
    assert done["status"] == "SUCCEEDED"
    assert head.call("GET", f"/api/jobs/{sid}/logs")[1]["logs"] == "survived\n"


def test_supervisor_killed_marks_the_job_failed_and_ends_its_processes(head: Head) -> None:
    sid = head.submit(entrypoint="sleep 300 & echo child $!; wait")
    job = head.wait_status(sid, "RUNNING")
    logs = wait("the child's pid", lambda: head.call("GET", f"/api/jobs/{sid}/logs")[1]["logs"])
    child = psutil.Process(int(logs.split()[-1]))
    leader = psutil.Process(int(job["driver_info"]["pid"]))
    supervisor = leader.parent()
    assert supervisor is not None
    supervisor.kill()  # as a lost node or the OOM killer would
    done = head.wait_status(sid, "FAILED")
    assert done["error_type"] == "JOB_SUPERVISOR_ACTOR_DIED"
    for proc in (leader, child):  # the job's whole process group goes with its supervisor
        wait(f"{proc.pid} to die with the supervisor",
              lambda p=proc: not p.is_running() or p.status() == psutil.STATUS_ZOMBIE)


def test_cli_submit_logs_list_and_state(head: Head, tmp_path: Any) -> None:
    work = tmp_path / "proj"
    work.mkdir()
    (work / "main.py").write_text("import sys; print('args', sys.argv[1:])\n")
    run = rayctl(head.temp_dir, "job", "submit", "--working-dir", str(work), "--",
                  sys.executable, "main.py", "--flag", "x")
    assert run.returncode == 0, run.stderr
    assert "args ['--flag', 'x']" in run.stdout and "succeeded" in run.stdout
    sid = run.stdout.split("Job '")[1].split("'")[0]
    assert rayctl(head.temp_dir, "job", "status", sid).stdout.startswith(f"Job '{sid}': SUCCEEDED")
    assert "args" in rayctl(head.temp_dir, "job", "logs", sid).stdout
    assert sid in rayctl(head.temp_dir, "job", "list").stdout
    failed = rayctl(head.temp_dir, "job", "submit", "--", "exit 4")
    assert failed.returncode == 1 and "exit code 4" in failed.stdout
    nodes = json.loads(rayctl(head.temp_dir, "list", "nodes", "--json").stdout)
    assert len(nodes) == 1 and nodes[0]["is_head_node"] and nodes[0]["state"] == "ALIVE"
    alive = rayctl(head.temp_dir, "list", "nodes", "--filter", "state=DEAD")
    assert "No nodes match the filters." in alive.stdout
    unknown = rayctl(head.temp_dir, "list", "things")
    assert unknown.returncode == 2 and "unknown kind" in unknown.stderr
    version = rayctl(head.temp_dir, "--version")
    assert version.returncode == 0 and version.stdout.startswith("rayctl ")


TASKS_SCRIPT = """
import time
import runtime as rt
rt.init()

@rt.remote
def square(x):
    return x * x

@rt.remote(max_retries=0)
def broken():
    raise ValueError("no luck")

@rt.remote
class Counter:
    def incr(self):
        return 1

print("squares", sum(rt.get([square.remote(i) for i in range(6)])))
try:
    rt.get(broken.remote())
except Exception:
    print("broken failed")
c = Counter.remote()
rt.get([c.incr.remote() for _ in range(3)])
big = rt.put(b"x" * 3_000_000)
print("ready", big.id, flush=True)
time.sleep(300)
"""


def test_tasks_objects_and_metrics_of_a_running_driver(head: Head, tmp_path: Any) -> None:
    """What a Ray user reads with `ray list tasks|objects`, `ray summary tasks` and a metrics
    scrape, while a job's driver holds an object in the store."""
    script = tmp_path / "tasks.py"
    script.write_text(TASKS_SCRIPT)
    sid = head.submit(entrypoint=f"{sys.executable} {script}")
    logs = wait("the driver to be ready", lambda: "ready" in (
        text := head.call("GET", f"/api/jobs/{sid}/logs")[1]["logs"]) and text)
    object_id = logs.split("ready ")[1].split()[0]
    try:
        job_id = head.job(sid)["job_id"]  # its driver's: this job's tasks, not other tests'
        tasks = wait("the tasks' events (sent each second)", lambda: len(rows := json.loads(
            rayctl(head.temp_dir, "list", "tasks", "--json", "--filter", "state=FINISHED",
                    "--filter", f"job_id={job_id}").stdout)) >= 9 and rows)
        by_name = {}
        for row in tasks:
            by_name.setdefault(row["name"], []).append(row)
        assert len(by_name["square"]) == 6 and len(by_name["Counter.incr"]) == 3
        assert all(r["type"] == "NORMAL_TASK" and r["node_id"] and r["worker_id"]
                   for r in by_name["square"])
        assert all(r["type"] == "ACTOR_TASK" for r in by_name["Counter.incr"])
        failed = json.loads(rayctl(head.temp_dir, "list", "tasks", "--json",
                                    "--filter", "name=broken", "--filter", f"job_id={job_id}").stdout)
        assert [(r["state"], r["error_type"]) for r in failed] == [
            ("FAILED", "TASK_EXECUTION_EXCEPTION")]
        assert "no luck" in failed[0]["error_message"]
        summary = json.loads(rayctl(head.temp_dir, "summary", "tasks", "--json").stdout)
        assert summary["summary"]["square"]["state_counts"]["FINISHED"] >= 6
        assert summary["summary"]["broken"]["state_counts"] == {"FAILED": 1}
        table = rayctl(head.temp_dir, "summary", "tasks")
        assert table.returncode == 0 and "Counter.incr" in table.stdout
        objects = json.loads(rayctl(head.temp_dir, "list", "objects", "--json").stdout)
        held = [o for o in objects if o["object_id"] == object_id]
        assert len(held) == 1 and held[0]["object_size"] >= 3_000_000
        assert held[0]["copy"] == "PRIMARY" and held[0]["in_memory"]
        status, text = head.call("GET", "/metrics")
        assert status == 200
        finished = [line for line in text.splitlines()
                    if line.startswith('rayctl_tasks{state="FINISHED"}')]
        assert finished and float(finished[0].split()[-1]) >= 9
        used = [line for line in text.splitlines() if line.startswith("rayctl_object_store_used_bytes{")]
        assert used and float(used[0].split()[-1]) >= 3_000_000
        assert head.call("GET", "/api/state/tasks?limit=0")[0] == 400
    finally:
        head.call("POST", f"/api/jobs/{sid}/stop")
        head.wait_status(sid, "STOPPED", "FAILED", "SUCCEEDED")


def test_a_tls_cluster_serves_https_only(tmp_path: Any) -> None:
    temp_dir = str(tmp_path / "rayctl")
    started = rayctl(temp_dir, "start", "--head", "--tls", "--num-cpus", "1",
                      "--dashboard-port", "0")
    try:
        assert started.returncode == 0, started.stderr
        assert "web service: https://127.0.0.1:" in started.stdout
        head = Head(temp_dir)
        assert head.url.startswith("https://")
        run = rayctl(temp_dir, "job", "submit", "--", "echo over-tls")  # verifies the cluster CA
        assert run.returncode == 0, run.stderr
        assert "over-tls" in run.stdout
        plain = head.url.replace("https://", "http://")
        with pytest.raises(aiohttp.ClientError):  # no plain-text service beside it
            asyncio.run(_get(plain + "/api/version", head.token))
    finally:
        rayctl(temp_dir, "stop")


async def _get(url: str, token: str) -> int:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:
        async with s.get(url) as r:
            return r.status

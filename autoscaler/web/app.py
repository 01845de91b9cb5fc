"""The head's web service as an aiohttp application: Ray's Jobs REST API (as Ray 2.60's
JobSubmissionClient calls it), Prometheus metrics, the cluster's state as JSON, and the login
page, all behind the cluster token (auth.py). The JobManager does the work; the routes parse,
call it off the event loop, and answer in Ray's shapes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from autoscaler.web import auth
from autoscaler.web.guard import Guard
from runtime.constants import RAYCTL_VERSION
from runtime.gcs.schema import JobRecord
from runtime.jobs.manager import JobManager, JobNotFoundError, JobStateError
from runtime.jobs.model import (
    INTERNAL_NAMESPACE_PREFIX,
    JobInfo,
    JobSubmitRequest,
    driver_details,
)
from runtime.jobs.store import JobExistsError
from runtime.runtime_env.packages import MAX_PACKAGE_BYTES

log = logging.getLogger("rayctl.web")
JOBS_API_VERSION = "4"  # Ray's CURRENT_VERSION of the Jobs API that Ray 2.60's client expects
RAY_API_VERSION = "2.60.0"  # the Ray release whose REST API this service speaks
MAX_JSON_BYTES = 1024 * 1024
WATCH_S = 1.0  # how often supervisors that died without an end are looked for

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(manager: JobManager, token: str, *, cluster_id: str = "", secure: bool = False,
             extra_routes: list[web.RouteDef] | None = None, watch: bool = True,
             drivers: Callable[[], dict[str, JobRecord]] = dict,
             guard: Guard | None = None) -> web.Application:
    """`drivers`: the GCS's driver records (init() callers), listed with the submissions;
    `guard`: the port's pre-authentication caps (autoscaler/web/guard.py), told of each
    connection that proves the token."""
    app = web.Application(middlewares=[auth.middleware(token, guard)],
                          client_max_size=MAX_PACKAGE_BYTES + 1024 * 1024)
    routes = JobRoutes(manager, cluster_id, drivers)
    app.add_routes([*auth.login_routes(token, secure), *routes.defs(), *(extra_routes or [])])
    if watch:
        app.cleanup_ctx.append(routes.watch)
    return app


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)


def _json(value: Any) -> web.Response:
    return web.Response(text=json.dumps(value), content_type="application/json")


def _drivers_of_submissions(drivers: dict[str, JobRecord]) -> dict[str, str]:
    """submission id -> the job id of its entrypoint's driver (the latest, if it ran several)."""
    linked = {}
    for job_id, record in sorted(drivers.items(), key=lambda kv: kv[1]["start"]):
        if record.get("submission_id"):
            linked[record["submission_id"]] = job_id
    return linked


def _with_driver(job: JobInfo, linked: dict[str, str]) -> dict[str, Any]:
    details = job.details()
    details["job_id"] = details.get("job_id") or linked.get(job.submission_id)
    return details


class JobRoutes:
    def __init__(self, manager: JobManager, cluster_id: str,
                 drivers: Callable[[], dict[str, JobRecord]] = dict) -> None:
        self.m = manager
        self.cluster_id = cluster_id
        self.drivers = drivers

    def defs(self) -> list[web.RouteDef]:
        return [
            web.get("/api/version", self.version),
            web.get("/api/packages/{protocol}/{name}", self.package_exists),
            web.put("/api/packages/{protocol}/{name}", self.upload_package),
            web.post("/api/jobs/", self.submit),
            web.get("/api/jobs/", self.list_jobs),
            web.get("/api/jobs/{id}", self.get_job),
            web.delete("/api/jobs/{id}", self.delete),
            web.post("/api/jobs/{id}/stop", self.stop),
            web.get("/api/jobs/{id}/logs", self.logs),
            web.get("/api/jobs/{id}/logs/tail", self.tail),
        ]

    async def watch(self, app: web.Application) -> Any:
        """While the service runs: end the jobs whose supervisor died (a lost node)."""

        async def loop() -> None:
            while True:
                try:
                    ended = await asyncio.to_thread(self.m.check_supervisors)
                    for sid in ended:
                        log.warning("job %s failed: its supervisor actor died", sid)
                except Exception:  # noqa: BLE001 - the GCS restarting: try again next time
                    log.exception("checking job supervisors failed")
                await asyncio.sleep(WATCH_S)

        task = asyncio.create_task(loop())
        yield
        task.cancel()

    async def version(self, request: web.Request) -> web.Response:
        return _json({"version": JOBS_API_VERSION, "ray_version": RAY_API_VERSION,
                      "ray_commit": "", "session_name": self.cluster_id,
                      "rayctl_version": RAYCTL_VERSION})

    async def package_exists(self, request: web.Request) -> web.Response:
        uri = _package_uri(request)
        if await asyncio.to_thread(self.m.package_exists, uri):
            return web.Response()
        return _text(404, f"Package {uri} does not exist")

    async def upload_package(self, request: web.Request) -> web.Response:
        uri = _package_uri(request)
        if (request.content_length or 0) > MAX_PACKAGE_BYTES:
            return _text(413, f"package {uri} is over {MAX_PACKAGE_BYTES >> 20} MiB")
        data = await request.read()
        try:
            await asyncio.to_thread(self.m.upload_package, uri, data)
        except ValueError as exc:
            return _text(400, str(exc))
        return web.Response()

    async def submit(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            job = JobSubmitRequest.model_validate(body)
        except ValidationError as exc:
            return _text(400, _validation_message(exc))
        try:
            sid = await asyncio.to_thread(self.m.submit, job)
        except JobExistsError as exc:
            return _text(400, str(exc))
        except ValueError as exc:
            return _text(400, str(exc))
        return _json({"job_id": sid, "submission_id": sid})

    async def list_jobs(self, request: web.Request) -> web.Response:
        """Submissions, then the drivers that called init() themselves (as Ray lists them);
        a submission's own driver is the submission."""
        jobs, drivers = await asyncio.gather(asyncio.to_thread(self.m.jobs),
                                             asyncio.to_thread(self.drivers))
        linked = _drivers_of_submissions(drivers)
        return _json([_with_driver(j, linked) for j in jobs] + [
            driver_details(job_id, record) for job_id, record in sorted(
                drivers.items(), key=lambda kv: kv[1]["start"])
            if not record.get("submission_id")
            and not record["namespace"].startswith(INTERNAL_NAMESPACE_PREFIX)])

    async def get_job(self, request: web.Request) -> web.Response:
        return await self._on_job(request, lambda sid: _json(_with_driver(
            self.m.get(sid), _drivers_of_submissions(self.drivers()))))

    async def stop(self, request: web.Request) -> web.Response:
        return await self._on_job(request, lambda sid: _json({"stopped": self.m.stop(sid)}))

    async def delete(self, request: web.Request) -> web.Response:
        return await self._on_job(request, lambda sid: _json({"deleted": self.m.delete(sid)}))

    async def logs(self, request: web.Request) -> web.Response:
        return await self._on_job(request, lambda sid: _json({"logs": self.m.logs(sid)}))

    async def tail(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        try:
            await asyncio.to_thread(self.m.get, sid)
        except JobNotFoundError as exc:
            return _text(404, str(exc))
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)

        async def send() -> None:
            async for text in self.m.tail(sid):
                await ws.send_str(text)

        # the client sends nothing: its close (or a dead connection) ends the follow at once
        sender, closed = asyncio.create_task(send()), asyncio.create_task(_closed(ws))
        done, pending = await asyncio.wait({sender, closed}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if sender in done and sender.exception() is not None:
            log.warning("following the logs of %s failed: %s", sid, sender.exception())
        await ws.close()
        return ws

    async def _on_job(self, request: web.Request, act: Callable[[str], web.Response]) -> web.Response:
        sid = request.match_info["id"]
        try:
            return await asyncio.to_thread(act, sid)
        except JobNotFoundError as exc:
            return _text(404, str(exc))
        except JobStateError as exc:
            return _text(400, str(exc))


async def _closed(ws: web.WebSocketResponse) -> None:
    """Done when the client closes its side (it sends nothing else)."""
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            return


def _package_uri(request: web.Request) -> str:
    return f"{request.match_info['protocol']}://{request.match_info['name']}"


async def _json_body(request: web.Request) -> Any:
    if (request.content_length or 0) > MAX_JSON_BYTES:
        return _text(413, f"the request body is over {MAX_JSON_BYTES >> 20} MiB")
    raw = await request.content.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        return _text(413, f"the request body is over {MAX_JSON_BYTES >> 20} MiB")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return _text(400, f"the request body is not JSON: {exc}")
    if not isinstance(body, dict):
        return _text(400, "the request body must be a JSON object like {\"entrypoint\": ...}")
    return body


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return f"bad job request: {where}: {first['msg']}"

"""The head's web service process (`python -m autoscaler.web.server ...`), run and restarted by
the head's supervisor: a driver of the cluster (submitted jobs' supervisors are its actors,
detached, so they outlive a restart of this process) serving app.py on the dashboard port, over
HTTPS when the cluster runs TLS, with the dashboard (dashboard.py) and its samples (series.py).
It writes `<session>/web.json` ({"url"}) once it listens."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import redis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from autoscaler.status import ClusterStatus
from autoscaler.web.app import make_app
from autoscaler.web.dashboard import ClusterInfo, Dashboard, session_started
from autoscaler.web.guard import Guard
from autoscaler.web.guard import serve as guarded_serve
from autoscaler.web.metrics import ClusterCollector
from autoscaler.web.series import SeriesStore
from autoscaler.web.state import (
    MAX_LISTED,
    ClusterReader,
    StateKind,
    matches,
    object_rows,
    parse_filter,
    rows,
    task_rows,
    task_summary,
)
from runtime.auth import read_credentials
from runtime.gcs.schema import GcsKeys, KvKey, KvNamespace
from runtime.grpc_auth import open_channel
from runtime.jobs.manager import JobManager

log = logging.getLogger("rayctl.web")
WEB_FILE = "web.json"
JOIN_TIMEOUT_S = 60.0
INDEX = """rayctl head web service (cluster {cluster_id})
  GET  /                          the dashboard (autoscaler/web/dashboard.py lists its routes)
  GET  /api/jobs/                 submitted jobs (Ray's Jobs REST API; `rayctl job ...`)
  GET  /api/state/<kind>          nodes, actors, placement-groups, jobs, tasks, objects
                                  (`rayctl list ...`; ?filter=key=value, ?limit=N)
  GET  /api/summary/tasks         tasks by function and state (`rayctl summary tasks`)
  GET  /metrics                   Prometheus metrics
"""


def status_reader(r: redis.Redis, cluster_id: str) -> Callable[[], ClusterStatus | None]:
    """The monitor's latest status, or None (no monitor, or another version's)."""
    def status() -> ClusterStatus | None:
        raw = r.hget(GcsKeys(cluster_id).kv(KvNamespace.AUTOSCALER_STATUS), KvKey.STATUS)
        if not raw:
            return None
        try:
            return ClusterStatus.from_json(raw)  # type: ignore[arg-type]
        except ValueError:  # another version's monitor wrote it
            return None

    return status


def state_routes(reader: ClusterReader, manager: JobManager,
                 status: Callable[[], ClusterStatus | None]) -> list[web.RouteDef]:
    cluster_id = reader.cluster_id
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(reader, status, manager.jobs))

    async def metrics(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def listing(kind: StateKind) -> list[dict[str, Any]]:
        if kind is StateKind.TASKS:
            return task_rows(reader.tasks())
        tables = reader.tables()
        if kind is StateKind.OBJECTS:
            return object_rows(reader.objects(tables.nodes))
        return rows(tables, kind)

    async def state(request: web.Request) -> web.Response:
        kinds = ", ".join(k.value for k in StateKind)
        try:
            kind = StateKind(request.match_info["kind"])
        except ValueError:
            return web.Response(status=400, text=f"unknown kind; kinds: {kinds}")
        try:
            filters = [parse_filter(f) for f in request.query.getall("filter", [])]
            limit = int(request.query.get("limit", MAX_LISTED))
            if limit <= 0:
                raise ValueError(f"limit {limit} must be a positive number of rows")
        except ValueError as exc:
            return web.Response(status=400, text=str(exc))
        listed = [row for row in await asyncio.to_thread(listing, kind) if matches(row, filters)]
        return web.json_response(listed[:limit])

    async def summary(request: web.Request) -> web.Response:
        if request.match_info["kind"] != StateKind.TASKS:
            return web.Response(status=400, text="summaries: tasks (actors: GET /api/state/actors)")
        return web.json_response(task_summary(await asyncio.to_thread(reader.task_summary)))

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=INDEX.format(cluster_id=cluster_id))

    return [web.get("/metrics", metrics), web.get("/api/state/{kind}", state),
            web.get("/api/summary/{kind}", summary), web.get("/api/", index)]


async def serve(args: argparse.Namespace) -> None:
    import runtime as rt
    from runtime.api import _core

    credentials = read_credentials(args.token_file)
    await _join(args.gcs_address, credentials)
    manager = JobManager(_core().gcs_call)
    host, _, port = args.redis_address.rpartition(":")
    r = redis.Redis(host=host, port=int(port), password=credentials.token)
    tls = credentials.tls
    reader = ClusterReader(r, args.cluster_id, _core().gcs_call,
                           lambda address: open_channel(address, credentials.token, tls=tls))
    guard = Guard()
    status = status_reader(r, args.cluster_id)
    dashboard = Dashboard(reader, status, SeriesStore(r, args.cluster_id), ClusterInfo(
        args.cluster_id, args.gcs_address, session_started(args.session_dir)))
    app = make_app(manager, credentials.token, cluster_id=args.cluster_id, secure=tls is not None,
                   extra_routes=[*state_routes(reader, manager, status), *dashboard.routes()],
                   drivers=reader.drivers, guard=guard)
    app.cleanup_ctx.append(dashboard.record)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    listener = await guarded_serve(runner, guard, args.host, args.port,
                                   tls.server if tls else None)
    bound = listener.sockets[0].getsockname()[1]
    url = f"{'https' if tls else 'http'}://{args.host}:{bound}"
    if args.session_dir:
        _write_web_file(args.session_dir, url)
    log.info("serving at %s", url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()
    await runner.cleanup()
    rt.shutdown()


async def _join(gcs_address: str, credentials: Any) -> None:
    """Join as a driver once the head's GCS and raylet answer (they start beside us)."""
    import runtime as rt

    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while True:
        try:
            await asyncio.to_thread(rt.init, address=gcs_address, _token=credentials,
                                    namespace="_rayctl_web")
            return
        except (ConnectionError, TimeoutError, OSError) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"the head's GCS at {gcs_address} did not answer in "
                                 f"{JOIN_TIMEOUT_S:.0f} s: {exc}") from None
            await asyncio.sleep(0.2)


def _write_web_file(session_dir: str, url: str) -> None:
    path = os.path.join(session_dir, WEB_FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump({"url": url, "pid": os.getpid(), "at": time.time()}, f)
    os.replace(tmp, path)


def read_web_file(session_dir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(session_dir, WEB_FILE)) as f:
            data: dict[str, Any] = json.load(f)
            return data
    except (FileNotFoundError, ValueError):
        return None


def main(argv: list[str] | None = None) -> None:
    from runtime.log_rotation import rotate_own_output

    p = argparse.ArgumentParser(prog="python -m autoscaler.web.server")
    p.add_argument("--gcs-address", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--redis-address", required=True)
    p.add_argument("--cluster-id", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8265)
    p.add_argument("--session-dir", default="")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rotate_own_output()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()

"""The dashboard: the page (static/, shipped in the package: no CDN) and the JSON it polls, served
by the head web service behind the same token and login. The page's other data are the routes
the CLI uses too (`/api/jobs/`, `/api/state/<kind>`, `/api/summary/tasks`).

  GET /                          the page (tabs: overview, autoscaler, jobs, actors, placement
                                 groups, tasks, logs)
  GET /static/<file>             its script and style
  GET /api/cluster               nodes with their resources and store in use, counts, age
  GET /api/autoscaler            the monitor's latest status (demand, decisions, lifecycles, ...)
  GET /api/series?window=hour|day  the plots' samples (autoscaler/web/series.py)
  GET /api/logs                  each live node's log files
  GET /api/logs/<node>/<file>?tail=N  the end of one of them
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from autoscaler.status import ClusterStatus
from autoscaler.web.series import STEP_S, SeriesStore, Window, record_once
from autoscaler.web.state import ClusterReader
from runtime.protocol.states import NodeState

log = logging.getLogger("rayctl.web")
STATIC = Path(__file__).parent / "static"
ASSETS = {"dashboard.js": "application/javascript", "dashboard.css": "text/css"}
RESOURCES = ("CPU", "GPU", "memory")
MAX_LOG_TAIL = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    cluster_id: str
    gcs_address: str
    started_at: float  # unix s: when the head's session began


class Dashboard:
    def __init__(self, reader: ClusterReader, status: Callable[[], ClusterStatus | None],
                 series: SeriesStore, info: ClusterInfo) -> None:
        self.reader, self.status, self.series, self.info = reader, status, series, info

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.page),
            web.get("/static/{name}", self.asset),
            web.get("/api/cluster", self.cluster),
            web.get("/api/autoscaler", self.autoscaler),
            web.get("/api/series", self.series_route),
            web.get("/api/logs", self.log_files),
            web.get("/api/logs/{node_id}/{name}", self.log_tail),
        ]

    async def record(self, app: web.Application) -> AsyncIterator[None]:
        """While the service runs: a sample of the cluster every STEP_S (cleanup_ctx)."""
        async def loop() -> None:
            while True:
                try:
                    await asyncio.to_thread(record_once, self.reader, self.series, self.status)
                except Exception as exc:  # noqa: BLE001 - Redis restarting, a node going away
                    log.warning("could not record the dashboard's sample: %s", exc)
                await asyncio.sleep(STEP_S)

        task = asyncio.ensure_future(loop())
        yield
        task.cancel()

    # -- the page -------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers=_NO_STORE)

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound(text=f"no asset {name!r}")
        return web.FileResponse(STATIC / name, headers={"Content-Type": ASSETS[name], **_NO_STORE})

    # -- data -----------------------------------------------------------------------------------
    async def cluster(self, request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(self._cluster))

    def _cluster(self) -> dict[str, Any]:
        tables = self.reader.tables()
        stores = {node.node_id: stats for node, stats in self.reader.store_stats(tables.nodes)}
        nodes = []
        counts: Counter[tuple[str, str]] = Counter()
        for n in sorted(tables.nodes, key=lambda n: (not n.is_head, n.node_type, n.node_id)):
            state = NodeState.from_wire(n.state)
            node_type = n.node_type or ("head" if n.is_head else "other")
            counts[node_type, state.value] += 1
            if state is NodeState.DEAD:
                continue
            stats = stores.get(n.node_id)
            nodes.append({
                "node_id": n.node_id, "node_type": node_type, "state": state.value,
                "is_head": n.is_head, "address": n.address,
                "resources": {name: [max(n.total[name] - n.available.get(name, 0.0), 0.0),
                                     n.total[name]] for name in RESOURCES if name in n.total},
                "store": [stats.object_store_used, stats.object_store_capacity] if stats else None,
                "idle_s": None if not n.idle_since else max(0.0, time.time() - n.idle_since),
            })
        by_type: dict[str, dict[str, int]] = {}
        for (node_type, state_name), count in sorted(counts.items()):
            by_type.setdefault(node_type, {})[state_name] = count
        return {"cluster_id": self.info.cluster_id, "address": self.info.gcs_address,
                "started_at": self.info.started_at, "nodes": nodes, "counts": by_type}

    async def autoscaler(self, request: web.Request) -> web.Response:
        status = await asyncio.to_thread(self.status)
        if status is None:
            return web.json_response({"at": None})
        return web.Response(text=status.to_json(), content_type="application/json")

    async def series_route(self, request: web.Request) -> web.Response:
        try:
            window = Window(request.query.get("window", Window.HOUR))
        except ValueError:
            return web.Response(status=400, text="window must be hour or day")
        return web.json_response(await asyncio.to_thread(self.series.read, window))

    async def log_files(self, request: web.Request) -> web.Response:
        tables = await asyncio.to_thread(self.reader.tables)
        answers = await asyncio.to_thread(self.reader.log_files, tables.nodes)
        return web.json_response([{
            "node_id": node.node_id, "node_type": node.node_type or ("head" if node.is_head else ""),
            "is_head": node.is_head,
            "files": [{"name": f.name, "size": f.size} for f in reply.files],
        } for node, reply in answers])

    async def log_tail(self, request: web.Request) -> web.Response:
        try:
            tail = min(int(request.query.get("tail", 65536)), MAX_LOG_TAIL)
            if tail <= 0:
                raise ValueError
        except ValueError:
            return web.Response(status=400, text=f"tail must be a number of bytes, 1 to {MAX_LOG_TAIL}")
        node_id, name = request.match_info["node_id"], request.match_info["name"]
        tables = await asyncio.to_thread(self.reader.tables)
        node = next((n for n in tables.nodes if n.node_id == node_id
                     and NodeState.from_wire(n.state) is not NodeState.DEAD), None)
        if node is None:
            return web.Response(status=404, text=f"no live node {node_id}")
        text, problem = await asyncio.to_thread(self.reader.read_log, node, name, tail)
        if problem:
            return web.Response(status=404, text=problem)
        return web.Response(text=text)


_NO_STORE = {"Cache-Control": "no-store"}


def session_started(session_dir: str) -> float:
    """When the head's session began (its directory's creation), 0 when unknown."""
    try:
        return os.stat(session_dir).st_ctime if session_dir else 0.0
    except OSError:
        return 0.0

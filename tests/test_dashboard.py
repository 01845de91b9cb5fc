"""The dashboard's routes over HTTP on a real head (`rayctl start --head`): the page and its
assets behind the token, a browser without it sent to the login page, `rayctl dashboard`'s
one-time link (once only), the cluster overview and samples matching the cluster, per-node logs
(and nothing outside the node's log directory). The page itself runs in a real Chromium in
scripts/test-browser.sh."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from web_head import Head, rayctl, wait


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    temp_dir = str(tmp_path_factory.mktemp("dash") / "rayctl")
    started = rayctl(temp_dir, "start", "--head", "--num-cpus", "2", "--dashboard-port", "0")
    try:
        assert started.returncode == 0, started.stderr
        yield Head(temp_dir)
    finally:
        assert rayctl(temp_dir, "stop").returncode == 0


def test_the_page_and_its_assets_need_the_token(head: Head) -> None:
    status, page, _ = head.get("/")
    assert status == 200 and "/static/dashboard.js" in page
    status, script, headers = head.get("/static/dashboard.js")
    assert status == 200 and headers["Content-Type"].startswith("application/javascript")
    assert "fetch(" in script and "cdn" not in script.lower()  # shipped, works offline
    for path in ("/", "/static/dashboard.js", "/api/cluster", "/api/series", "/api/logs"):
        status, body, _ = head.get(path, token=False)
        assert status == 401 and "node" not in str(body), path
    # a browser without the token is sent to the login page, and back afterwards
    status, _, headers = head.get("/", token=False, headers={"Accept": "text/html"})
    where = urlsplit(headers["Location"])
    assert status == 303 and where.path == "/login" and parse_qs(where.query) == {"next": ["/"]}
    assert head.get("/static/../auth.py")[0] == 404


def test_a_one_time_login_link_works_once(head: Head) -> None:
    shown = rayctl(head.temp_dir, "dashboard")
    assert shown.returncode == 0, shown.stderr
    assert f"Dashboard: {head.url}" in shown.stdout
    link = next(w for w in shown.stdout.split() if "/login?code=" in w)

    async def visit() -> tuple[int, int, int]:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.get(link, allow_redirects=False) as r:
                first = r.status
            async with s.get(head.url + "/api/cluster") as r:  # the cookie it set
                after = r.status
        async with aiohttp.ClientSession() as s:
            async with s.get(link, allow_redirects=False) as r:
                return first, after, r.status
    assert asyncio.run(visit()) == (303, 200, 401)


def test_overview_and_samples_match_the_cluster(head: Head) -> None:
    status, cluster, _ = head.get("/api/cluster")
    assert status == 200
    [node] = cluster["nodes"]
    assert node["is_head"] and node["state"] == "ALIVE" and node["resources"]["CPU"] == [0.0, 2.0]
    assert node["store"][1] > 0 and cluster["counts"] == {"head": {"ALIVE": 1}}
    assert cluster["started_at"] <= time.time() and cluster["address"]
    # a sample is taken as the service starts, then every 10 s
    points = wait("a sample recorded", lambda: head.get("/api/series?window=hour")[1])
    assert points[-1]["v"]["nodes"] == 1 and points[-1]["v"]["CPU:total"] == 2.0
    assert head.get("/api/series?window=day")[0] == 200
    assert head.get("/api/series?window=week")[0] == 400
    assert head.get("/api/autoscaler")[1] == {"at": None}  # a head started without autoscaling


def test_each_nodes_logs_and_nothing_else(head: Head) -> None:
    status, nodes, _ = head.get("/api/logs")
    assert status == 200
    [node] = nodes
    names = [f["name"] for f in node["files"]]
    raylet = next(n for n in names if n.startswith("raylet-"))
    status, text, _ = head.get(f"/api/logs/{node['node_id']}/{raylet}?tail=4096")
    assert status == 200 and "raylet" in text and len(text.encode()) <= 4096
    for name in ("..%2Fnode_ip_address.json", ".hidden", "missing.log"):
        status, text, _ = head.get(f"/api/logs/{node['node_id']}/{name}")
        assert status == 404 and "no log file" in text, name
    assert head.get(f"/api/logs/{node['node_id']}/{raylet}?tail=-1")[0] == 400
    assert head.get(f"/api/logs/nope/{raylet}")[0] == 404

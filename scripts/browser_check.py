"""The dashboard in a real headless Chromium, against a live local cluster made by `rayctl up`
(run by scripts/test-browser.sh). Drives the browser over the DevTools protocol (aiohttp's
WebSocket client: no extra dependency) and checks what a user sees:

1. a visit without the token lands on the login page;
2. `rayctl dashboard CONFIG`'s one-time link logs in, and works only once;
3. the overview shows as many live nodes as `rayctl list nodes` does;
4. a submitted job's logs show on the jobs tab;
5. tasks that need a CPU (the head has none) make the autoscaler launch a worker: its decision
   shows on the autoscaler tab, and the overview's node count changes without a reload;
6. every tab loads without a script error.

Screenshots go to $ARTIFACTS (default /tmp/rayctl-browser). Exit 0 when all hold."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("ARTIFACTS", "/tmp/rayctl-browser"))
DEADLINE_S = 90.0
NAME = "browser"


def log(text: str) -> None:
    print(f"browser: {text}", flush=True)


class Chrome:
    """One headless Chromium and one page, driven over the DevTools protocol."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.port = _free_port()
        scratch = profile.parent / "browser-tmp"  # Chromium's own temp files: removed with it
        scratch.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}",
             f"--remote-debugging-port={self.port}", "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env=dict(os.environ, TMPDIR=str(scratch)))
        self.session: aiohttp.ClientSession | None = None
        self.ws: Any = None
        self.ids = 0
        self.errors: list[str] = []
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        end = time.monotonic() + 30
        while True:
            try:
                async with self.session.get(f"http://127.0.0.1:{self.port}/json") as r:
                    pages = [t for t in await r.json() if t["type"] == "page"]
                    if pages:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > end:
                raise RuntimeError("Chromium's DevTools port did not answer in 30 s")
            await asyncio.sleep(0.2)
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.ensure_future(self._read())
        await self.call("Page.enable")
        await self.call("Runtime.enable")

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                self.errors.append(data["params"]["exceptionDetails"].get("text", "?") + " " +
                                   json.dumps(data["params"]["exceptionDetails"].get("exception", {})
                                              .get("description", ""))[:300])

    async def call(self, method: str, **params: Any) -> Any:
        self.ids += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self.ids] = future
        await self.ws.send_str(json.dumps({"id": self.ids, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def go(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.wait("the page to load", "document.readyState === 'complete'")

    async def js(self, expression: str) -> Any:
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                awaitPromise=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait(self, what: str, expression: str, deadline_s: float = DEADLINE_S) -> Any:
        end = time.monotonic() + deadline_s
        while True:
            try:
                value = await self.js(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            if time.monotonic() > end:
                text = await self.js("document.body ? document.body.innerText.slice(0, 2000) : ''")
                raise AssertionError(f"timed out waiting for {what}; the page says:\n{text}")
            await asyncio.sleep(0.2)

    async def screenshot(self, name: str) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        path = ARTIFACTS / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        log(f"screenshot {path}")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rayctl(env: dict[str, str], *args: str, check: bool = True,
           timeout: float = 180) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "autoscaler.cli", *args], env=env, text=True,
                          capture_output=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"rayctl {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def text_has(text: str) -> str:
    return f"document.body.innerText.includes({json.dumps(text)})"


async def check(chrome: Chrome, env: dict[str, str], config: str) -> None:
    shown = rayctl(env, "dashboard", config).stdout
    log(shown.strip())
    url = next(w for w in shown.split() if w.startswith("http") and "/login?code=" not in w)
    link = next(w for w in shown.split() if "/login?code=" in w)

    # 1. without the token: the login page
    await chrome.go(url + "/#overview")
    await chrome.wait("the login page", "document.title === 'rayctl: log in'")
    await chrome.screenshot("login")

    # 2. the one-time link logs in; a second use does not
    await chrome.go(link)
    await chrome.wait("the overview", text_has("nodes alive"))
    await chrome.call("Network.clearBrowserCookies")
    await chrome.go(link)
    await chrome.wait("the login page again (a used link)", "document.title === 'rayctl: log in'")
    await chrome.go(rayctl(env, "dashboard", config).stdout.split("log in once with ")[1].split()[0])
    await chrome.wait("the overview", text_has("nodes alive"))

    # 3. the overview's live nodes are the cluster's
    nodes = [n for n in json.loads(rayctl(env, "list", "nodes", "--cluster-config", config,
                                          "--json").stdout) if n["state"] != "DEAD"]
    alive = await chrome.wait("the node count card", """(() => {
        const card = [...document.querySelectorAll('.card')].find(c => c.innerText.includes('nodes alive'));
        return card && card.querySelector('.n').innerText; })()""")
    assert int(alive) == len(nodes), f"overview says {alive} nodes alive; rayctl list: {len(nodes)}"
    log(f"overview: {alive} nodes alive, as rayctl list nodes says")
    await chrome.js("window.__noReload = 1")

    # 4. a job's logs
    marker = "dashboard-job-output-" + str(os.getpid())
    submitted = rayctl(env, "job", "submit", config, "--no-wait", "--", f"echo {marker}")
    sid = submitted.stdout.split("Job '")[1].split("'")[0]
    await chrome.go(url + "/#jobs")
    await chrome.wait("the job in the list", text_has(sid))
    await chrome.js(f"""[...document.querySelectorAll('tr.click')].find(
        r => r.innerText.includes({json.dumps(sid)})).click()""")
    await chrome.wait("the job's logs", f"(document.getElementById('job-log') || {{}}).innerText"
                      f"?.includes({json.dumps(marker)})")
    await chrome.screenshot("jobs")
    log(f"jobs: {sid}'s output shows")

    # 5. demand makes the autoscaler launch a worker; the overview follows without a reload
    await chrome.go(url + "/#overview")
    await chrome.wait("the overview", text_has("nodes alive"))
    await chrome.js("window.__noReload = 1")
    driver = subprocess.Popen([sys.executable, "-c", (
        "import time, runtime as rt\n"
        f"rt.init(address={NAME!r})\n"
        "@rt.remote(num_cpus=1)\n"
        "def work():\n    time.sleep(20)\n"
        "rt.get([work.remote() for _ in range(2)])\n")], env=env)
    try:
        grown = await chrome.wait("a worker node in the overview (a live update)", f"""(() => {{
            const card = [...document.querySelectorAll('.card')].find(c => c.innerText.includes('nodes alive'));
            return card && +card.querySelector('.n').innerText > {alive} && window.__noReload === 1; }})()""")
        assert grown
        log("overview: the node count grew without a reload")
        await chrome.screenshot("overview")
        await chrome.go(url + "/#autoscaler")
        await chrome.wait("a launch decision", text_has("launch"))
        await chrome.wait("its cause", text_has("queued_demand"))
        await chrome.screenshot("autoscaler")
        log("autoscaler: the launch decision and its cause show")
    finally:
        driver.kill()
        driver.wait()

    # 6. every tab loads
    for tab in ("actors", "placement-groups", "tasks", "logs"):
        await chrome.go(url + "/#" + tab)
        await chrome.wait(f"the {tab} tab", "document.getElementById('page').dataset.updated")
    await chrome.wait("the log files", text_has("raylet-"))
    await chrome.js("""[...document.querySelectorAll('a')].find(a => a.innerText.startsWith('raylet-')).click()""")
    await chrome.wait("a raylet log's text", "(document.getElementById('node-log') || {}).innerText?.length > 0")
    await chrome.screenshot("logs")
    assert not chrome.errors, f"script errors on the page: {chrome.errors}"
    log("every tab loaded, no script error")


async def main(binary: str) -> int:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="rayctl-browser-"))
    env = dict(os.environ, HOME=str(root / "home"), RAYCTL_TEMP_DIR=str(root / "tmp"))
    for name in ("RAYCTL_ADDRESS", "RAYCTL_TOKEN_FILE", "RAYCTL_DASHBOARD_ADDRESS"):
        env.pop(name, None)
    config = root / "cluster.yaml"
    config.write_text(yaml.safe_dump({
        "cluster_name": NAME, "max_workers": 2,
        "provider": {"type": "local", "state_dir": str(root / "slots"), "terminate_grace_s": 1},
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 0}},
            "cpu": {"resources": {"CPU": 1}, "max_workers": 2, "idle_timeout_s": 30},
        },
    }))
    chrome = Chrome(binary, root / "profile")
    try:
        rayctl(env, "up", str(config), "-y")
        await chrome.start()
        await check(chrome, env, str(config))
        return 0
    finally:
        await chrome.close()
        down = rayctl(env, "down", str(config), "-y", check=False)
        if down.returncode != 0:
            log(f"rayctl down failed: {down.stderr}")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))

"""A head started by `rayctl start --head` with its web service, as the web tests reach it:
`rayctl` in a subprocess against its temp dir, and HTTP calls with (or without) its token."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import aiohttp
from polling import wait_for

from autoscaler.web.server import read_web_file
from runtime.auth import read_credentials
from runtime.node import read_address_file

DEADLINE_S = 60


def rayctl(temp_dir: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`rayctl ARGS` for the cluster under `temp_dir`, whatever this shell's environment names."""
    env = dict(os.environ, RAYCTL_TEMP_DIR=temp_dir)
    for name in ("RAYCTL_TOKEN_FILE", "RAYCTL_DASHBOARD_ADDRESS", "RAYCTL_ADDRESS"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "autoscaler.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def wait(what: str, check: Any, deadline_s: float = DEADLINE_S) -> Any:
    return wait_for(check, deadline_s, what)


class Head:
    def __init__(self, temp_dir: str) -> None:
        self.temp_dir = temp_dir
        info = read_address_file(temp_dir)
        assert info is not None
        self.session_dir = info["session_dir"]
        self.token = read_credentials(info["token_file"]).token
        web = wait("the web service", lambda: read_web_file(self.session_dir))
        self.url = web["url"]

    def call(self, method: str, path: str, *, token: str | None = "ours", **kwargs: Any) -> tuple[int, Any]:
        status, body, _ = self.request(method, path, token=token, **kwargs)
        return status, body

    def get(self, path: str, *, token: bool = True, **kwargs: Any) -> tuple[int, Any, Any]:
        """GET without following redirects: (status, body, headers)."""
        return self.request("GET", path, token="ours" if token else None,
                            allow_redirects=False, **kwargs)

    def request(self, method: str, path: str, *, token: str | None = "ours",
                **kwargs: Any) -> tuple[int, Any, Any]:
        async def go() -> tuple[int, Any, Any]:
            headers = {} if token is None else {
                "Authorization": f"Bearer {self.token if token == 'ours' else token}"}
            async with aiohttp.ClientSession(headers=headers) as s:
                async with s.request(method, self.url + path, **kwargs) as r:
                    text = await r.text()
                    body = json.loads(text) if r.content_type == "application/json" else text
                    return r.status, body, r.headers
        return asyncio.run(go())

    def job(self, sid: str) -> dict[str, Any]:
        status, body = self.call("GET", f"/api/jobs/{sid}")
        assert status == 200, body
        return body

    def wait_status(self, sid: str, *statuses: str) -> dict[str, Any]:
        return wait(f"{sid} to be {statuses}",
                    lambda: (j := self.job(sid))["status"] in statuses and j)

    def submit(self, **body: Any) -> str:
        status, reply = self.call("POST", "/api/jobs/", json=body)
        assert status == 200, reply
        assert set(reply) == {"job_id", "submission_id"}  # exactly what Ray's client unpacks
        return str(reply["submission_id"])

"""Reaching a head's web service from the CLI (`rayctl job`, `rayctl list`): where it is and
with which token, then Ray's REST calls over aiohttp.

Where: `--address URL`, else $RAYCTL_DASHBOARD_ADDRESS, else a cluster config's head as `rayctl
up` recorded it (a head on another machine through a port forwarded over SSH for the command's
length), else the cluster `rayctl start --head` started on this machine. The token:
$RAYCTL_TOKEN_FILE (or $RAYCTL_TOKEN), else that of the cluster on this machine when the URL is
its service's (never sent to another address)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from runtime.auth import Credentials, credentials_from_env, parse_credentials, read_credentials
from runtime.tls import TLS_NAME

ADDRESS_ENV = "RAYCTL_DASHBOARD_ADDRESS"


class WebError(Exception):
    """The service refused or failed a call; the message is its answer, on one line."""


@dataclass(frozen=True)
class WebTarget:
    url: str
    token: str
    ssl_context: ssl.SSLContext | None = None
    forwarded: bool = False  # reached through a port forwarded for as long as it is in use

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def local_target(session_dir: str, token_file: str) -> WebTarget | None:
    """The web service of a head whose session is on this machine, if it runs."""
    from autoscaler.web.server import read_web_file

    info = read_web_file(session_dir)
    if info is None:
        return None
    credentials = read_credentials(token_file)
    return WebTarget(info["url"].rstrip("/"), credentials.token,
                     credentials.tls.client if credentials.tls else None)


def resolve_target(address: str | None, temp_dir: str | None = None) -> WebTarget:
    """A service by URL or cluster name, or the one cluster started on this machine."""
    from runtime.node import LocalCluster, choose_local_cluster, local_clusters

    def service_of(cluster: LocalCluster) -> WebTarget:
        target = local_target(cluster.session_dir, cluster.token_file)
        if target is None:
            raise WebError(f"cluster {cluster.name!r} ({cluster.address}) runs no web service: "
                           "was its head started with --no-include-dashboard? (its log: "
                           f"{cluster.session_dir}/logs/web.log)")
        return target

    address = address or os.environ.get(ADDRESS_ENV)
    if not address:
        try:
            only = choose_local_cluster("auto", temp_dir)
        except ConnectionError as exc:
            raise WebError(f"{exc}; or pass --address http://HEAD:8265 (or set {ADDRESS_ENV})"
                           .replace("address='auto' ", "")) from None
        assert only is not None
        return service_of(only)
    named = choose_local_cluster(address, temp_dir) if "://" not in address else None
    if named is not None:
        return service_of(named)
    url = address.rstrip("/")
    if "://" not in url:
        url = "http://" + url
    credentials = credentials_from_env()
    if credentials is not None:
        return WebTarget(url, credentials.token, credentials.tls.client if credentials.tls else None)
    for cluster in local_clusters(temp_dir):  # a service of this machine: its own token
        mine = local_target(cluster.session_dir, cluster.token_file)
        if mine is not None and mine.url == url:
            return mine
    raise WebError(f"no cluster token for {url}: set RAYCTL_TOKEN_FILE to that cluster's token "
                   "file (the token of a cluster here goes only to its own service)")


@contextlib.contextmanager
def reach(address: str | None, config: str | None = None, temp_dir: str | None = None,
          local_port: int = 0) -> Iterator[WebTarget]:
    """The web service to call, for as long as the block runs: with a cluster config whose head
    is another machine, through a port forwarded over the launcher's SSH runner (to this
    machine's `local_port`, 0: a free one)."""
    if config:
        with _config_target(config, local_port) as target:
            yield target
    else:
        yield resolve_target(address, temp_dir)


@contextlib.contextmanager
def _config_target(config: str, local_port: int = 0) -> Iterator[WebTarget]:
    from autoscaler.launcher.head import LaunchError, is_local, load_record
    from autoscaler.launcher.remote import head_services, open_head
    from autoscaler.launcher.up import load_cluster
    from providers.base import ProviderError

    cluster = load_cluster(config)
    name = cluster.cluster_name
    record = load_record(name)
    if record is None:
        raise WebError(f"cluster {name!r} has no record on this machine: start it with "
                       f"`rayctl up {config}`")
    if is_local(cluster):
        target = local_target(record.session_dir, record.token_file)
        if target is None:
            raise WebError(f"cluster {name!r}'s head runs no web service "
                           f"(its logs: {record.session_dir}/logs/web.log)")
        yield target
        return
    try:
        head = open_head(cluster)
        services = head_services(head)
        read = head.runner.run(f"cat {shlex.quote(services.session_dir)}/web.json", timeout_s=30)
    except (LaunchError, ProviderError) as exc:
        raise WebError(f"cannot reach cluster {name!r}'s head: {exc}") from None
    info = _last_json_line(read.output) if read.exit_code == 0 else None
    if info is None or "url" not in info:
        raise WebError(f"cluster {name!r}'s head runs no web service (its log on the head: "
                       f"{services.session_dir}/logs/web.log)")
    remote = urlsplit(str(info["url"]))
    runner = head.runner.inner
    if remote.port is None or not hasattr(runner, "forward_port"):
        raise WebError(f"cannot forward the web service of cluster {name!r} to this machine "
                       f"({type(runner).__name__} forwards no ports)")
    credentials = _head_credentials(head.runner, services.token_file, name)
    try:
        forward = runner.forward_port(remote.port, local_port)
    except ProviderError as exc:
        raise WebError(f"cannot forward cluster {name!r}'s web service: {exc}") from None
    try:
        yield WebTarget(f"{remote.scheme}://127.0.0.1:{forward.local_port}", credentials.token,
                        credentials.tls.client if credentials.tls else None, forwarded=True)
    finally:
        forward.close()


_MARK = "--rayctl-token-file--"


def _head_credentials(runner: Any, token_file: str, name: str) -> Credentials:
    """The head's token file, read over the runner (it exists on the head only), past anything
    a login shell printed first."""
    read = runner.run(f"echo {_MARK}; cat {shlex.quote(token_file)}", timeout_s=30)
    _, mark, text = read.output.partition(_MARK + "\n")
    try:
        if read.exit_code != 0 or not mark:
            raise ValueError(read.output.strip().splitlines()[-1] if read.output.strip() else "")
        return parse_credentials(text, f"cluster {name!r}'s token file {token_file} on its head")
    except ValueError as exc:
        raise WebError(f"cannot read cluster {name!r}'s token file {token_file} on its head: "
                       f"{exc}") from None


def _last_json_line(output: str) -> dict[str, Any] | None:
    """The head's web.json, past anything a login shell printed first."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


class WebClient:
    def __init__(self, target: WebTarget, timeout_s: float = 60) -> None:
        self.target = target
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WebClient:
        self._session = aiohttp.ClientSession(headers=self.target.headers, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None
        await self._session.close()

    def _kwargs(self) -> dict[str, Any]:
        if self.target.ssl_context is None:
            return {}
        return {"ssl": self.target.ssl_context, "server_hostname": TLS_NAME}

    async def call(self, method: str, path: str, *, body: Any = None, data: bytes | None = None,
                   ok_statuses: tuple[int, ...] = (200,)) -> Any:
        assert self._session is not None
        try:
            async with self._session.request(method, self.target.url + path, json=body, data=data,
                                             **self._kwargs()) as resp:
                text = await resp.text()
                if resp.status not in ok_statuses:
                    raise WebError(f"{self.target.url}{path}: {resp.status}: {text.strip()}")
                if resp.content_type == "application/json":
                    return json.loads(text)
                return resp.status
        except aiohttp.ClientConnectionError as exc:
            raise WebError(f"cannot reach {self.target.url}: {exc}") from None

    async def follow(self, submission_id: str) -> AsyncIterator[str]:
        assert self._session is not None
        url = f"{self.target.url}/api/jobs/{submission_id}/logs/tail"
        try:
            async with self._session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=10),
                                                **self._kwargs()) as ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        yield msg.data
                    elif msg.type == aiohttp.WSMsgType.ERROR:
                        raise WebError(f"following {submission_id}'s logs failed: {ws.exception()}")
        except aiohttp.WSServerHandshakeError as exc:
            raise WebError(f"{url}: {exc.status}: {exc.message}") from None
        except aiohttp.ClientConnectionError as exc:
            raise WebError(f"cannot reach {self.target.url}: {exc}") from None

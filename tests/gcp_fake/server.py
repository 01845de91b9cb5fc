"""The fake Compute REST server: a threaded stdlib HTTP server on 127.0.0.1 (ephemeral port)
that routes the Compute v1 paths the provider calls to ComputeApi and answers JSON."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gcp_fake.api import ComputeApi
from gcp_fake.api_errors import ComputeApiError
from gcp_fake.state import ComputeState, Received

_P = r"/compute/v1/projects/(?P<project>[^/]+)"
_Z = _P + r"/zones/(?P<zone>[^/]+)"

Handler = Callable[[ComputeApi, dict[str, str], dict[str, str], bytes], Any]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    ("POST", re.compile(_Z + r"/instances/bulkInsert"),
     lambda a, p, q, b: a.bulk_insert(p["project"], p["zone"], q, b)),
    ("POST", re.compile(_Z + r"/instances"),
     lambda a, p, q, b: a.insert(p["project"], p["zone"], q, b)),
    ("GET", re.compile(_Z + r"/instances"),
     lambda a, p, q, b: a.list(p["project"], p["zone"], q)),
    ("GET", re.compile(_Z + r"/instances/(?P<name>[^/]+)"),
     lambda a, p, q, b: a.get(p["project"], p["zone"], p["name"])),
    ("DELETE", re.compile(_Z + r"/instances/(?P<name>[^/]+)"),
     lambda a, p, q, b: a.delete(p["project"], p["zone"], p["name"], q)),
    ("POST", re.compile(_Z + r"/instances/(?P<name>[^/]+)/setLabels"),
     lambda a, p, q, b: a.set_labels(p["project"], p["zone"], p["name"], q, b)),
    ("GET", re.compile(_P + r"/aggregated/instances"),
     lambda a, p, q, b: a.aggregated_list(p["project"], q)),
    ("GET", re.compile(_Z + r"/operations/(?P<op>[^/]+)"),
     lambda a, p, q, b: a.state.operation(p["project"], p["op"])),
    ("GET", re.compile(_P + r"/global/operations/(?P<op>[^/]+)"),
     lambda a, p, q, b: a.state.operation(p["project"], p["op"])),
    ("POST", re.compile(_P + r"/global/firewalls"),
     lambda a, p, q, b: a.firewall_insert(p["project"], b)),
    ("GET", re.compile(_P + r"/global/firewalls"),
     lambda a, p, q, b: a.firewall_list(p["project"])),
    ("GET", re.compile(_P + r"/global/firewalls/(?P<name>[^/]+)"),
     lambda a, p, q, b: a.firewall_get(p["project"], p["name"])),
    ("PATCH", re.compile(_P + r"/global/firewalls/(?P<name>[^/]+)"),
     lambda a, p, q, b: a.firewall_patch(p["project"], p["name"], b)),
    ("DELETE", re.compile(_P + r"/global/firewalls/(?P<name>[^/]+)"),
     lambda a, p, q, b: a.firewall_delete(p["project"], p["name"])),
    ("GET", re.compile(_Z + r"/machineTypes/(?P<name>[^/]+)"),
     lambda a, p, q, b: a.machine_type(p["project"], p["zone"], p["name"])),
]
_WAIT = re.compile(_P + r"/(?:zones/[^/]+|global)/operations/(?P<op>[^/]+)/wait")


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep test output clean

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        api = self.server.api
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with api.state.lock:
            api.state.received.append(Received(method, url.path, query, body))
        try:
            result = self._dispatch(method, url.path, query, raw)
            self._reply(200, json.dumps(result).encode())
        except ComputeApiError as exc:
            self._reply(exc.status, exc.body())

    def _dispatch(self, method: str, path: str, query: dict[str, str], raw: bytes) -> Any:
        api = self.server.api
        injected = api.state.injected_error(method, path)
        if injected is not None:
            raise injected
        wait = _WAIT.fullmatch(path)
        if method == "POST" and wait:
            # operations.wait: block until done, or until the cap (the real one: ~2 minutes)
            with api.state.lock:
                delay = api.state.seconds_until_done(wait["op"])
            time.sleep(delay)
            with api.state.lock:
                return api.state.operation(wait["project"], wait["op"])
        for route_method, pattern, handler in ROUTES:
            match = pattern.fullmatch(path)
            if route_method == method and match:
                with api.state.lock:
                    return handler(api, match.groupdict(), query, raw)
        raise ComputeApiError(404, "notFound", f"fake Compute API has no {method} {path}")

    def _reply(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: ComputeApi


class FakeCompute:
    """A running fake; a GCPProvider reaches it with `client_args()`. Use as a context
    manager (or call `stop()`) so the port and thread are released."""

    def __init__(self) -> None:
        self.state = ComputeState()
        self._server = _Server(("127.0.0.1", 0), _RequestHandler)
        self._server.api = ComputeApi(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="gcp-fake", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def client_args(self) -> dict[str, Any]:
        """GCPProvider's keyword arguments for this fake: its endpoint, anonymous credentials."""
        from google.auth.credentials import AnonymousCredentials

        return {"api_endpoint": self.endpoint, "credentials": AnonymousCredentials()}

    def start(self) -> FakeCompute:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeCompute:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""A GCP worker whose head is gone deletes its own VM: who it is comes from the metadata
server, the delete goes through the unmodified google-cloud-compute client to our fake."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from gcp_fake import FakeCompute

from providers.gcp import GCPProvider
from providers.gcp.self_delete import SelfIdentity, delete_self, whoami
from tests.polling import wait_for

ZONE = "us-central1-a"
NODE_TYPES: dict[str, dict[str, Any]] = {"cpu": {"node_config": {"machineType": "n1-standard-4"}}}


def _metadata_server(values: dict[str, str]) -> ThreadingHTTPServer:
    """GCE's metadata server for one VM: answers only with the Metadata-Flavor header, as GCE."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.removeprefix("/computeMetadata/v1/")
            ok = self.headers.get("Metadata-Flavor") == "Google" and path in values
            body = values[path].encode() if ok else b"not found"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    with FakeCompute() as server:
        yield server


def test_a_worker_deletes_exactly_its_own_vm(fake: FakeCompute) -> None:
    provider = GCPProvider(
        "demo",
        {"type": "gcp", "project_id": "proj", "region": "us-central1", "availability_zone": ZONE},
        NODE_TYPES,
        **fake.client_args(),
    )
    me, other = provider.launch("cpu", provider.offerings("cpu")[0], 2, "req-1")
    metadata = _metadata_server(
        {
            "project/project-id": "proj",
            "instance/zone": f"projects/123456/zones/{ZONE}",
            "instance/name": me.id,
        }
    )
    thread = threading.Thread(target=metadata.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        host, port = metadata.server_address[:2]
        identity = whoami(f"http://{host!s}:{port}/computeMetadata/v1")
    finally:
        metadata.shutdown()
        metadata.server_close()
        thread.join(5)
    assert identity == SelfIdentity("proj", ZONE, me.id)
    delete_self(identity, **fake.client_args())
    wait_for(lambda: me.id not in {i.id for i in provider.list_instances()}, 10, "the VM gone")
    assert [i.id for i in provider.list_instances()] == [other.id]
    assert "self_delete" in (provider.end_machine_command("cpu") or "")

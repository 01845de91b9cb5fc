"""A GCE worker deleting its own VM: the end_machine_command of GCP workers whose head is gone
(runtime/raylet/head_loss.py). Run on the node as `python3 -m providers.gcp.self_delete`.

Who it is (project, zone, name) and its credentials come from the metadata server: the VM's
own service account, which needs `compute.instances.delete` on the instance (e.g.
roles/compute.instanceAdmin.v1) and the cloud-platform scope. Give worker types one in
`node_config.serviceAccounts`; without it the delete is refused and the caller powers off.
"""

from __future__ import annotations

import sys
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from providers.gcp.clients import CALL_TIMEOUT_S, NO_RETRY, make_clients

METADATA_URL = "http://metadata.google.internal/computeMetadata/v1"
PERMISSION = "compute.instances.delete"


@dataclass(frozen=True, slots=True)
class SelfIdentity:
    project: str
    zone: str
    name: str


def whoami(metadata_url: str = METADATA_URL, timeout_s: float = 5.0) -> SelfIdentity:
    """This VM's project, zone and name, from the metadata server."""

    def get(path: str) -> str:
        request = urllib.request.Request(
            f"{metadata_url}/{path}", headers={"Metadata-Flavor": "Google"}
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return str(reply.read().decode()).strip()

    zone = get("instance/zone").rsplit("/", 1)[-1]  # "projects/<number>/zones/<zone>"
    return SelfIdentity(project=get("project/project-id"), zone=zone, name=get("instance/name"))


def delete_self(
    me: SelfIdentity, *, api_endpoint: str | None = None, credentials: Any | None = None
) -> Any:
    """Ask Compute to delete this VM; returns the operation (nobody waits for it: the VM, and
    this process with it, goes away). `credentials` None: the VM's service account."""
    from google.cloud import compute_v1

    clients = make_clients(api_endpoint, credentials)
    request = compute_v1.DeleteInstanceRequest(
        project=me.project, zone=me.zone, instance=me.name, request_id=str(uuid.uuid4())
    )
    return clients.instances.delete_unary(request=request, timeout=CALL_TIMEOUT_S, retry=NO_RETRY)


def main() -> int:
    try:
        me = whoami()
    except OSError as exc:
        print(f"error: cannot read this VM's name from the metadata server: {exc}", file=sys.stderr)
        return 1
    try:
        delete_self(me)
    except Exception as exc:  # the SDK's errors; one line, naming the fix
        print(
            f"error: could not delete {me.name} in {me.zone}: {exc}; the VM's service account "
            f"needs {PERMISSION} on it (node_config.serviceAccounts, cloud-platform scope)",
            file=sys.stderr,
        )
        return 1
    print(f"deleting {me.name} in {me.zone} (project {me.project})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

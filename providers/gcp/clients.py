"""The google-cloud-compute REST clients of one provider, and our operation wait loop.

The SDK is imported here, lazily, the first time a GCP cluster needs it. The endpoint and the
credentials are parameters, so the unchanged provider code also runs against a local fake.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from providers.base import TransientError
from providers.gcp.errors import check_operation

# Per-call HTTP timeout. operations.wait blocks server-side for up to 2 minutes, so it gets more.
CALL_TIMEOUT_S = 60.0
WAIT_CALL_TIMEOUT_S = 150.0
# Our error policy owns retries (TransientError + the autoscaler's jittered backoff): the SDK's
# default retry would silently block a reconcile for up to 10 minutes on a 503.
NO_RETRY: Any = None


@dataclass(slots=True)
class ComputeClients:
    instances: Any
    zone_operations: Any
    global_operations: Any
    firewalls: Any
    machine_types: Any


def make_clients(api_endpoint: str | None, credentials: Any | None) -> ComputeClients:
    """Build REST clients for `api_endpoint` (None: Google's) with `credentials` (None: the
    application default credentials)."""
    from google.api_core.client_options import ClientOptions
    from google.cloud import compute_v1

    kwargs: dict[str, Any] = {"transport": "rest"}
    if api_endpoint:
        kwargs["client_options"] = ClientOptions(api_endpoint=api_endpoint)
    if credentials is not None:
        kwargs["credentials"] = credentials
    return ComputeClients(
        instances=compute_v1.InstancesClient(**kwargs),
        zone_operations=compute_v1.ZoneOperationsClient(**kwargs),
        global_operations=compute_v1.GlobalOperationsClient(**kwargs),
        firewalls=compute_v1.FirewallsClient(**kwargs),
        machine_types=compute_v1.MachineTypesClient(**kwargs),
    )


class OperationWaiter:
    """Waits for zone / global operations with `operations.wait`, never `operation.result()`.

    The SDK's `ExtendedOperation.result()` polls the real Google endpoint whatever the client's
    endpoint is; `wait` returns when the operation is done or after about two minutes, so we loop
    until DONE or our own deadline.
    """

    def __init__(self, clients: ComputeClients, project: str, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clients = clients
        self._project = project
        self._timeout_s = timeout_s
        self._clock = clock

    def zone(self, operation: Any, zone: str) -> Any:
        """Wait for a zone operation; return it finished, or raise OperationFailed."""
        return self._loop(operation, lambda name, timeout: self._clients.zone_operations.wait(
            project=self._project, zone=zone, operation=name, timeout=timeout, retry=NO_RETRY))

    def global_(self, operation: Any) -> Any:
        """Wait for a global operation (firewalls); return it finished or raise."""
        return self._loop(operation, lambda name, timeout: self._clients.global_operations.wait(
            project=self._project, operation=name, timeout=timeout, retry=NO_RETRY))

    def _loop(self, operation: Any, wait: Callable[[str, float], Any]) -> Any:
        from google.cloud import compute_v1

        done = compute_v1.Operation.Status.DONE
        deadline = self._clock() + self._timeout_s
        while not _is_status(operation.status, done):
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise TransientError(
                    f"operation {operation.name} still {operation.status} after "
                    f"{self._timeout_s:.0f} s; a retry with the same request id finds its result")
            operation = wait(operation.name, min(WAIT_CALL_TIMEOUT_S, remaining + 5.0))
        return check_operation(operation)


def _is_status(status: Any, expected: Any) -> bool:
    # proto-plus returns enum values for known statuses; compare by name to be safe.
    return getattr(status, "name", status) == expected.name

"""The state behind the fake Compute API: instances, operations, firewalls, machine types, and
the knobs tests turn (stockout per zone, zone capacity, quota errors, slow operations,
injected HTTP errors, preemption). Time is read lazily: an operation is DONE once its
deadline passed, and its effects land then."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gcp_fake.api_errors import ComputeApiError, already_exists, not_found

BASE = "https://www.googleapis.com/compute/v1"

# name -> (guestCpus, memoryMb, built-in accelerators)
MACHINE_TYPES: dict[str, tuple[int, int, list[tuple[str, int]]]] = {
    "n1-standard-2": (2, 7680, []),
    "n1-standard-4": (4, 15360, []),
    "n1-standard-8": (8, 30720, []),
    "e2-standard-4": (4, 16384, []),
    "g2-standard-4": (4, 16384, [("nvidia-l4", 1)]),
    "a2-highgpu-1g": (12, 87040, [("nvidia-tesla-a100", 1)]),
}
ACCELERATOR_TYPES = {"nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-a100", "nvidia-l4"}


@dataclass
class Received:
    """One request the fake answered (for assertions on what the provider sent)."""

    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class InjectedError:
    error: ComputeApiError
    method: str | None = None
    path_contains: str | None = None
    times: int = 1


@dataclass
class FakeOperation:
    body: dict[str, Any]
    done_at: float
    finish: Callable[[], dict[str, Any] | None]  # applies effects; returns an error or None
    done: bool = False


@dataclass
class FakeInstance:
    zone: str
    body: dict[str, Any]
    ready_at: float
    created_at: float
    status: str = "PROVISIONING"


@dataclass
class Knobs:
    stockout_zones: set[str] = field(default_factory=set)
    zone_capacity: dict[str, int] = field(default_factory=dict)
    quota_metric: str | None = None  # every launch fails on this quota ...
    quota_in_operation: bool = False  # ... as a failed operation instead of a 403
    operation_delay_s: float = 0.0
    wait_cap_s: float = 0.2  # the real operations.wait returns after ~2 minutes at the latest
    list_lag_s: float = 0.0  # eventual consistency: list calls miss younger instances
    errors: list[InjectedError] = field(default_factory=list)


class ComputeState:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.knobs = Knobs()
        self.received: list[Received] = []
        self.instances: dict[tuple[str, str], FakeInstance] = {}
        self.operations: dict[str, FakeOperation] = {}
        self.request_ids: dict[str, str] = {}
        self.firewalls: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1000)

    # --- knobs and test-side views ------------------------------------------------------------

    def fail_next(self, error: ComputeApiError, method: str | None = None,
                  path_contains: str | None = None, times: int = 1) -> None:
        with self.lock:
            self.knobs.errors.append(InjectedError(error, method, path_contains, times))

    def injected_error(self, method: str, path: str) -> ComputeApiError | None:
        with self.lock:
            for injected in self.knobs.errors:
                if (injected.method in (None, method)
                        and (injected.path_contains or "") in path):
                    injected.times -= 1
                    if injected.times <= 0:
                        self.knobs.errors.remove(injected)
                    return injected.error
        return None

    def preempt(self, name: str) -> None:
        """GCE reclaims a spot VM: it goes TERMINATED (and is deleted later)."""
        with self.lock:
            instance = next(i for (_, n), i in self.instances.items() if n == name)
            assert instance.body["scheduling"].get("provisioningModel") == "SPOT", name
            instance.status = "TERMINATED"

    def instance_names(self) -> list[str]:
        with self.lock:
            self.tick()
            return sorted(name for _, name in self.instances)

    def bodies(self, method: str, path_suffix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r.body or {} for r in self.received
                    if r.method == method and r.path.endswith(path_suffix)]

    # --- time -----------------------------------------------------------------------------

    def tick(self) -> None:
        """Finish operations whose time has come; promote instances that are ready."""
        now = self.clock()
        for op in self.operations.values():
            if not op.done and op.done_at <= now:
                op.done = True
                error = op.finish()
                op.body.update(status="DONE", progress=100, endTime=_now_rfc3339())
                if error:
                    op.body.update(error)
        for instance in self.instances.values():
            if instance.status in ("PROVISIONING", "STAGING") and instance.ready_at <= now:
                instance.status = "RUNNING"

    # --- operations -------------------------------------------------------------------------

    def new_operation(self, project: str, zone: str | None, kind: str, target: str,
                      request_id: str | None,
                      finish: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
        """Start an operation, or return the one a previous call with this requestId started."""
        if request_id and request_id in self.request_ids:
            return self.operations[self.request_ids[request_id]].body
        op_id = next(self._ids)
        name = f"operation-{op_id}-{kind}"
        scope = f"projects/{project}/zones/{zone}" if zone else f"projects/{project}/global"
        body: dict[str, Any] = {
            "kind": "compute#operation", "id": str(op_id), "name": name,
            "operationType": kind, "targetLink": f"{BASE}/{target}", "status": "RUNNING",
            "progress": 0, "insertTime": _now_rfc3339(), "user": "fake@example.com",
            "selfLink": f"{BASE}/{scope}/operations/{name}",
        }
        if zone:
            body["zone"] = f"{BASE}/projects/{project}/zones/{zone}"
        if request_id:
            body["clientOperationId"] = request_id
            self.request_ids[request_id] = name
        self.operations[name] = FakeOperation(
            body, self.clock() + self.knobs.operation_delay_s, finish)
        self.tick()
        return body

    def operation(self, project: str, name: str) -> dict[str, Any]:
        self.tick()
        if name not in self.operations:
            raise not_found(f"projects/{project}/operations/{name}")
        return self.operations[name].body

    def seconds_until_done(self, name: str) -> float:
        op = self.operations.get(name)
        if op is None or op.done:
            return 0.0
        return max(0.0, min(op.done_at - self.clock(), self.knobs.wait_cap_s))

    # --- instances -------------------------------------------------------------------------

    def add_instance(self, project: str, zone: str, body: dict[str, Any]) -> None:
        name = body["name"]
        if (zone, name) in self.instances:
            raise already_exists(f"projects/{project}/zones/{zone}/instances/{name}")
        op_id = next(self._ids)
        nic_ip = f"10.128.{op_id // 250 % 250}.{op_id % 250 + 2}"
        for nic in body.get("networkInterfaces", []):
            nic["networkIP"] = nic_ip
            for access in nic.get("accessConfigs", []):
                access["natIP"] = f"34.66.{op_id // 250 % 250}.{op_id % 250 + 2}"
        body.update(
            id=str(op_id), kind="compute#instance", zone=f"{BASE}/projects/{project}/zones/{zone}",
            creationTimestamp=_now_rfc3339(),
            selfLink=f"{BASE}/projects/{project}/zones/{zone}/instances/{name}",
            labelFingerprint="42WmSpB8rSM=",
        )
        self.instances[(zone, name)] = FakeInstance(
            zone, body, ready_at=self.clock() + self.knobs.operation_delay_s,
            created_at=self.clock())

    def listable(self, instance: FakeInstance) -> bool:
        return instance.created_at <= self.clock() - self.knobs.list_lag_s

    def render(self, instance: FakeInstance) -> dict[str, Any]:
        return {**instance.body, "status": instance.status}

    def get_instance(self, project: str, zone: str, name: str) -> FakeInstance:
        self.tick()
        instance = self.instances.get((zone, name))
        if instance is None:
            raise not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        return instance

    def free_slots(self, zone: str) -> int:
        if zone in self.knobs.stockout_zones:
            return 0
        capacity = self.knobs.zone_capacity.get(zone)
        if capacity is None:
            return 10**6
        used = sum(1 for (z, _) in self.instances if z == zone)
        return max(0, capacity - used)


def stockout_error(project: str, zone: str, with_details: bool = False) -> dict[str, Any]:
    """The `error` of an operation that found no capacity, as GCE reports it."""
    code = "ZONE_RESOURCE_POOL_EXHAUSTED" + ("_WITH_DETAILS" if with_details else "")
    return {
        "error": {"errors": [{"code": code, "message": (
            f"The zone 'projects/{project}/zones/{zone}' does not have enough resources "
            "available to fulfill the request.  Try a different zone, or try again later.")}]},
        "httpErrorStatusCode": 503, "httpErrorMessage": "SERVICE UNAVAILABLE",
    }


def quota_error(metric: str, region: str) -> dict[str, Any]:
    """The `error` of an operation that hit a quota, with its quotaInfo detail."""
    return {
        "error": {"errors": [{
            "code": "QUOTA_EXCEEDED",
            "message": f"Quota '{metric}' exceeded.  Limit: 0.0 in region {region}.",
            "errorDetails": [{"quotaInfo": {
                "metricName": f"compute.googleapis.com/{metric.lower()}",
                "limitName": f"{metric}-per-project-region",
                "dimensions": {"region": region}, "limit": 0}}],
        }]},
        "httpErrorStatusCode": 403, "httpErrorMessage": "FORBIDDEN",
    }


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())

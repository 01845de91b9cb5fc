"""The fake Compute API's endpoints: each checks its request the way GCE does (message schema,
requestId, labels, GPU and spot rules) and acts on the ComputeState."""

from __future__ import annotations

import re
from typing import Any

from gcp_fake.api_errors import (
    already_exists,
    check_labels,
    check_name,
    check_request_id,
    invalid,
    not_found,
    parse_body,
    quota_exceeded,
)
from gcp_fake.state import (
    ACCELERATOR_TYPES,
    BASE,
    MACHINE_TYPES,
    ComputeState,
    quota_error,
    stockout_error,
)

_FILTER_TERM = re.compile(r'\(?\s*labels\.([a-z0-9_-]+)\s*(=|!=)\s*"?([a-z0-9_-]*)"?\s*\)?')


def label_matcher(expression: str) -> list[tuple[str, str, str]]:
    """Parse the filter subset the provider sends: `(labels.k = "v") (labels.k2 != "v2")`."""
    terms = []
    position = 0
    expression = expression.strip()
    while position < len(expression):
        match = _FILTER_TERM.match(expression, position)
        if match is None:
            raise invalid("filter", expression, "Invalid list filter expression.")
        terms.append((match.group(1), match.group(2), match.group(3)))
        position = match.end()
        while position < len(expression) and expression[position] == " ":
            position += 1
    return terms


def matches(labels: dict[str, str], terms: list[tuple[str, str, str]]) -> bool:
    return all((labels.get(k) == v) == (op == "=") for k, op, v in terms)


class ComputeApi:
    def __init__(self, state: ComputeState) -> None:
        self.state = state

    # --- instances -------------------------------------------------------------------------

    def insert(self, project: str, zone: str, query: dict[str, str], raw: bytes) -> Any:
        from google.cloud import compute_v1

        request_id = check_request_id(query.get("requestId"))
        body = parse_body(compute_v1.Instance, raw, "instance")
        self._check_instance(project, zone, body, bare_types=False)
        check_name(body["name"])
        body["machineType"] = f"{BASE}/projects/{project}/{body['machineType']}"
        return self._launch(project, zone, request_id, "insert", [body], min_count=1,
                            with_details=False)

    def bulk_insert(self, project: str, zone: str, query: dict[str, str], raw: bytes) -> Any:
        from google.cloud import compute_v1

        request_id = check_request_id(query.get("requestId"))
        bulk = parse_body(compute_v1.BulkInsertInstanceResource, raw, "bulkInsertInstanceResource")
        count, min_count = int(bulk.get("count", 0)), int(bulk.get("minCount") or 1)
        names = list(bulk.get("perInstanceProperties", {}))
        if count < 1 or len(names) != count:
            raise invalid("count", count, "This fake needs one perInstanceProperties entry "
                          "per instance.")
        if not 1 <= min_count <= count:
            raise invalid("minCount", min_count, "minCount must be between 1 and count.")
        properties = bulk["instanceProperties"]
        self._check_instance(project, zone, properties, bare_types=True)
        bodies = []
        for name in names:
            check_name(name, "perInstanceProperties")
            body = _instance_from_properties(project, zone, properties)
            body["name"] = name
            bodies.append(body)
        return self._launch(project, zone, request_id, "bulkInsert", bodies, min_count,
                            with_details=True)

    def _launch(self, project: str, zone: str, request_id: str, kind: str,
                bodies: list[dict[str, Any]], min_count: int, with_details: bool) -> Any:
        state = self.state
        if request_id in state.request_ids:  # a retry: the first operation, nothing new
            return state.new_operation(project, zone, kind, "", request_id, lambda: None)
        region = zone.rsplit("-", 1)[0]
        metric = state.knobs.quota_metric
        if metric and not state.knobs.quota_in_operation:
            raise quota_exceeded(metric, region)
        for body in bodies:  # a name clash is answered before any operation starts
            if (zone, body["name"]) in state.instances:
                raise already_exists(f"projects/{project}/zones/{zone}/instances/{body['name']}")
        target = f"projects/{project}/zones/{zone}/instances/{bodies[0]['name']}"

        # The outcome is decided now; instances show as PROVISIONING until the operation ends.
        error: dict[str, Any] | None = None
        created = min(len(bodies), state.free_slots(zone))
        if metric:
            error = quota_error(metric, region)
        elif created < min_count:
            error = stockout_error(project, zone, with_details)
        else:
            for body in bodies[:created]:
                state.add_instance(project, zone, body)

        def finish() -> dict[str, Any] | None:
            return error

        return state.new_operation(project, zone, kind, target, request_id, finish)

    def _check_instance(self, project: str, zone: str, body: dict[str, Any],
                        bare_types: bool) -> None:
        machine_type = body.get("machineType", "")
        if bare_types != ("/" not in machine_type) or (
                not bare_types and f"zones/{zone}/machineTypes/" not in machine_type):
            raise invalid("resource.machineType", machine_type, "Expected "
                          + ("a machine type name." if bare_types else
                             f"zones/{zone}/machineTypes/<type>."))
        if machine_type.rsplit("/", 1)[-1] not in MACHINE_TYPES:
            raise not_found(f"projects/{project}/zones/{zone}/machineTypes/{machine_type}")
        check_labels(body.get("labels", {}))
        scheduling = body.get("scheduling", {})
        for accelerator in body.get("guestAccelerators", []):
            name = accelerator["acceleratorType"]
            if (name.rsplit("/", 1)[-1] not in ACCELERATOR_TYPES
                    or (not bare_types and f"zones/{zone}/acceleratorTypes/" not in name)):
                raise invalid("resource.guestAccelerators[0].acceleratorType", name,
                              "Accelerator type not found in this zone.")
            if scheduling.get("onHostMaintenance") != "TERMINATE":
                raise invalid("resource.scheduling.onHostMaintenance",
                              scheduling.get("onHostMaintenance", "MIGRATE"),
                              "Instances with guest accelerators do not support live migration.")
        if scheduling.get("provisioningModel") == "SPOT" and (
                scheduling.get("automaticRestart", True)
                or scheduling.get("onHostMaintenance") != "TERMINATE"):
            raise invalid("resource.scheduling", scheduling, "Spot VMs require "
                          "automaticRestart=false and onHostMaintenance=TERMINATE.")

    def get(self, project: str, zone: str, name: str) -> Any:
        return self.state.render(self.state.get_instance(project, zone, name))

    def list(self, project: str, zone: str, query: dict[str, str]) -> Any:
        terms = label_matcher(query.get("filter", ""))
        self.state.tick()
        items = [self.state.render(i) for (z, _), i in sorted(self.state.instances.items())
                 if z == zone and self.state.listable(i)
                 and matches(i.body.get("labels", {}), terms)]
        return {"kind": "compute#instanceList", "id": f"projects/{project}/zones/{zone}/instances",
                "items": items, "selfLink": f"{BASE}/projects/{project}/zones/{zone}/instances"}

    def aggregated_list(self, project: str, query: dict[str, str]) -> Any:
        terms = label_matcher(query.get("filter", ""))
        self.state.tick()
        scopes: dict[str, Any] = {}
        for (zone, _), instance in sorted(self.state.instances.items()):
            if self.state.listable(instance) and matches(instance.body.get("labels", {}), terms):
                scope = scopes.setdefault(f"zones/{zone}", {"instances": []})
                scope["instances"].append(self.state.render(instance))
        return {"kind": "compute#instanceAggregatedList",
                "id": f"projects/{project}/aggregated/instances", "items": scopes}

    def delete(self, project: str, zone: str, name: str, query: dict[str, str]) -> Any:
        request_id = check_request_id(query.get("requestId"))
        if request_id in self.state.request_ids:
            return self.state.new_operation(project, zone, "delete", "", request_id, lambda: None)
        instance = self.state.get_instance(project, zone, name)
        instance.status = "STOPPING"

        def finish() -> None:
            self.state.instances.pop((zone, name), None)

        return self.state.new_operation(
            project, zone, "delete", f"projects/{project}/zones/{zone}/instances/{name}",
            request_id, finish)

    def set_labels(self, project: str, zone: str, name: str, query: dict[str, str],
                   raw: bytes) -> Any:
        from google.cloud import compute_v1

        request_id = check_request_id(query.get("requestId"))
        body = parse_body(compute_v1.InstancesSetLabelsRequest, raw, "instancesSetLabelsRequest")
        check_labels(body.get("labels", {}), "labels")
        instance = self.state.get_instance(project, zone, name)

        def finish() -> None:
            instance.body["labels"] = body.get("labels", {})

        return self.state.new_operation(
            project, zone, "setLabels", f"projects/{project}/zones/{zone}/instances/{name}",
            request_id, finish)

    # --- firewalls, machine types ------------------------------------------------------------

    def firewall_insert(self, project: str, raw: bytes) -> Any:
        from google.cloud import compute_v1

        body = parse_body(compute_v1.Firewall, raw, "firewall")
        check_name(body.get("name", ""))
        if body["name"] in self.state.firewalls:
            raise already_exists(f"projects/{project}/global/firewalls/{body['name']}")
        body.update(kind="compute#firewall", id=str(len(self.state.firewalls) + 1),
                    selfLink=f"{BASE}/projects/{project}/global/firewalls/{body['name']}")
        self.state.firewalls[body["name"]] = body
        return self.state.new_operation(project, None, "insert",
                                        f"projects/{project}/global/firewalls/{body['name']}",
                                        None, lambda: None)

    def firewall_get(self, project: str, name: str) -> Any:
        if name not in self.state.firewalls:
            raise not_found(f"projects/{project}/global/firewalls/{name}")
        return self.state.firewalls[name]

    def firewall_list(self, project: str) -> Any:
        return {"kind": "compute#firewallList", "items": list(self.state.firewalls.values())}

    def firewall_patch(self, project: str, name: str, raw: bytes) -> Any:
        from google.cloud import compute_v1

        current = self.firewall_get(project, name)
        patch = parse_body(compute_v1.Firewall, raw, "firewall")
        current.update({k: v for k, v in patch.items() if v not in ([], "", None, {})})
        return self.state.new_operation(project, None, "patch",
                                        f"projects/{project}/global/firewalls/{name}", None,
                                        lambda: None)

    def firewall_delete(self, project: str, name: str) -> Any:
        self.firewall_get(project, name)
        del self.state.firewalls[name]
        return self.state.new_operation(project, None, "delete",
                                        f"projects/{project}/global/firewalls/{name}", None,
                                        lambda: None)

    def machine_type(self, project: str, zone: str, name: str) -> Any:
        if name not in MACHINE_TYPES:
            raise not_found(f"projects/{project}/zones/{zone}/machineTypes/{name}")
        cpus, memory_mb, accelerators = MACHINE_TYPES[name]
        return {"kind": "compute#machineType", "name": name, "guestCpus": cpus,
                "memoryMb": memory_mb, "zone": zone,
                "accelerators": [{"guestAcceleratorType": t, "guestAcceleratorCount": n}
                                 for t, n in accelerators]}


def _instance_from_properties(project: str, zone: str, properties: dict[str, Any]) -> Any:
    """An Instance body from bulkInsert's InstanceProperties (bare type names become URLs)."""
    import copy

    body = copy.deepcopy(properties)
    body["machineType"] = f"{BASE}/projects/{project}/zones/{zone}/machineTypes/" + \
        properties["machineType"]
    for accelerator in body.get("guestAccelerators", []):
        accelerator["acceleratorType"] = (f"{BASE}/projects/{project}/zones/{zone}/"
                                          f"acceleratorTypes/{accelerator['acceleratorType']}")
    return body

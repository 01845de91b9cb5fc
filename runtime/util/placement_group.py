"""Placement groups, as in `ray.util.placement_group`: reserve bundles of resources across nodes
(PACK, SPREAD, STRICT_PACK, STRICT_SPREAD) and run tasks and actors inside them."""

from __future__ import annotations

import threading
import time
from typing import Any

from runtime import ids
from runtime.protocol import common_pb2, gcs_pb2
from runtime.protocol.common_pb2 import PlacementGroupInfo
from runtime.protocol.states import PlacementGroupState, PlacementStrategy
from runtime.serialization import serialize


class PlacementGroup:
    def __init__(self, pg_id: str, bundle_specs: list[dict[str, float]], strategy: str = PlacementStrategy.PACK,
                 created: bool = False) -> None:
        self.id = pg_id
        self.bundle_specs = bundle_specs
        self.strategy = strategy
        self._created = created  # known to be reserved already (the GCS placed it at creation)

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> Any:
        """An ObjectRef that resolves (to this group) once every bundle is reserved."""
        from runtime.api import _core

        cw = _core()
        ref = cw.new_owned_ref(cw.fresh_object_id())
        if self._created:
            cw.refs.complete(ref.id, inline=serialize(self).inline())
            return ref

        def watch() -> None:
            _wait_created(cw, self.id, None)
            cw.refs.complete(ref.id, inline=serialize(self).inline())

        threading.Thread(target=watch, name=f"pg-ready-{self.id}", daemon=True).start()
        return ref

    def wait(self, timeout_seconds: float = 30) -> bool:
        """True once the group is created, False if `timeout_seconds` passed first."""
        from runtime.api import _core

        if self._created:
            return True
        self._created = _wait_created(_core(), self.id, timeout_seconds)
        return self._created

    def __reduce__(self) -> tuple[Any, ...]:
        return (PlacementGroup, (self.id, self.bundle_specs, self.strategy))

    def __repr__(self) -> str:
        return f"PlacementGroup({self.id}, {self.strategy}, {self.bundle_specs})"


def _wait_created(cw: Any, pg_id: str, timeout_s: float | None) -> bool:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    version = 0
    while True:
        remaining = 10.0 if deadline is None else min(10.0, max(0.0, deadline - time.monotonic()))
        reply = cw.gcs_call("GetPlacementGroup", gcs_pb2.GetPlacementGroupRequest(
            pg_id=pg_id, after_version=version, timeout_s=remaining), timeout=remaining + 5)
        if reply.found and reply.pg.state == PlacementGroupInfo.CREATED:
            return True
        if not reply.found:
            raise ValueError(f"placement group {pg_id} is unknown to the cluster: it was removed "
                             "long ago, or created in another cluster")
        if reply.pg.state == PlacementGroupInfo.REMOVED:
            raise ValueError(f"placement group {pg_id} was removed before it was ready")
        version = reply.pg.version
        if deadline is not None and time.monotonic() >= deadline:
            return False


def placement_group(bundles: list[dict[str, float]], strategy: str = PlacementStrategy.PACK, name: str = "",
                    lifetime: str | None = None) -> PlacementGroup:
    """Ask the cluster to reserve `bundles`; returns at once (see `.ready()` / `.wait()`)."""
    from runtime.api import _core

    if strategy not in list(PlacementStrategy):
        raise ValueError(f"strategy must be one of {', '.join(PlacementStrategy)}, got {strategy!r}")
    if not bundles or not all(isinstance(b, dict) and b for b in bundles):
        raise ValueError("bundles must be a non-empty list of non-empty resource dicts, like [{'CPU': 1}]")
    for b in bundles:
        bad = {k: v for k, v in b.items() if not isinstance(v, int | float) or v < 0}
        if bad:
            raise ValueError(f"bundle amounts must be numbers >= 0, got {bad}")
    cw = _core()
    pg_id = ids.random_id(8)
    info = common_pb2.PlacementGroupInfo(
        pg_id=pg_id, name=name, namespace=cw.namespace, strategy=PlacementStrategy(strategy).wire,
        job_id=cw.job_id,
        detached=lifetime == "detached",
        bundles=[common_pb2.Bundle(index=i, resources={k: float(v) for k, v in b.items()})
                 for i, b in enumerate(bundles)])
    reply = cw.gcs_call("CreatePlacementGroup", gcs_pb2.CreatePlacementGroupRequest(pg=info))
    if reply.error:
        raise ValueError(reply.error)
    return PlacementGroup(pg_id, [dict(b) for b in bundles], strategy,
                          created=reply.pg.state == PlacementGroupInfo.CREATED)


def get_current_placement_group() -> PlacementGroup | None:
    """The placement group the running task or actor captures its children into (Ray's: set by
    placement_group_capture_child_tasks=True); None in a driver or without capture."""
    from runtime import api, worker_context

    cw = worker_context.current() or (api._core() if api.is_initialized() else None)
    group: PlacementGroup | None = cw.capture_pg if cw is not None else None
    return group


def remove_placement_group(pg: PlacementGroup) -> None:
    """Remove the group, asynchronously as in Ray: returns at once; the bundles' resources come
    back shortly after."""
    from runtime.api import _core

    _core().gcs_call_async("RemovePlacementGroup", gcs_pb2.PlacementGroupIdRequest(pg_id=pg.id))


def get_placement_group(name: str) -> PlacementGroup:
    from runtime.api import _core

    cw = _core()
    reply = cw.gcs_call("GetPlacementGroup", gcs_pb2.GetPlacementGroupRequest(name=name, namespace=cw.namespace))
    if not reply.found:
        raise ValueError(f"no placement group named {name!r}")
    return PlacementGroup(reply.pg.pg_id, [dict(b.resources) for b in reply.pg.bundles],
                          PlacementStrategy.from_wire(reply.pg.strategy).value)


def placement_group_table(pg: PlacementGroup | None = None) -> dict[str, Any]:
    """One group's entry; without a group, every group's entry by id (as Ray's)."""
    from runtime.api import _core

    if pg is None:
        reply = _core().gcs_call("ListPlacementGroups", gcs_pb2.Empty())
        return {p.pg_id: _table_entry(p) for p in reply.pgs}
    found = _core().gcs_call("GetPlacementGroup", gcs_pb2.GetPlacementGroupRequest(pg_id=pg.id))
    if not found.found:  # removed long ago (forgotten), or another cluster's
        return {"placement_group_id": "", "name": "", "strategy": "", "state": "", "bundles": {},
                "bundles_to_node_id": {}}
    return _table_entry(found.pg)


def _table_entry(p: Any) -> dict[str, Any]:
    """As Ray's: states and strategies as their names ("CREATED", "PACK")."""
    return {"placement_group_id": p.pg_id, "name": p.name,
            "strategy": PlacementStrategy.from_wire(p.strategy).value,
            "state": PlacementGroupState.from_wire(p.state).value,
            "bundles": {b.index: dict(b.resources) for b in p.bundles},
            "bundles_to_node_id": dict(enumerate(p.bundle_node_ids))}


def bundle_shape(shape: dict[str, float], pg: PlacementGroup, index: int) -> dict[str, float]:
    """A task's shape inside a group: its resources renamed to the group's bundle resources."""
    if index >= pg.bundle_count:
        raise ValueError(f"placement_group_bundle_index {index} is out of range: the group has "
                         f"{pg.bundle_count} bundles")
    scope = f"{index}_{pg.id}" if index >= 0 else pg.id
    out = {f"{name}_group_{scope}": amount for name, amount in shape.items()}
    out[f"bundle_group_{scope}"] = 0.001
    return out

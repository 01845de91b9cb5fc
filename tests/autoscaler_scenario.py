"""Autoscaler scenarios on virtual time: the real round (observe -> plan -> reconcile) with the fake
provider on a FakeClock, a lifecycle store, and a GCS the test plays: rows it writes as the GCS
would, and a drainer that answers as the GCS's DrainNode does.

Two backends: in memory (the store and the GCS view; most tests) and Redis (the real Monitor on a
RedisLifecycleStore and GCS rows in Redis; for the compare-and-set path and restarts).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import redis
from autoscaler_redis import RedisServer, new_cluster_id

from autoscaler.config import validate_config
from autoscaler.decisions import Decision, DecisionAction
from autoscaler.drain import DrainAnswer, NodeDrain
from autoscaler.executor import Executor
from autoscaler.lifecycle import InstanceRecord
from autoscaler.lifecycle_store import InMemoryLifecycleStore, LifecycleStore
from autoscaler.model import (
    DemandKind,
    PendingPlacementGroup,
    PlacementStrategy,
    Plan,
    ResourceDemand,
    Shape,
)
from autoscaler.monitor import Monitor, MonitorOptions, build_executor
from autoscaler.observe import GcsNode, GcsView, node_from_proto, scaling_config
from autoscaler.scaler import Autoscaler
from autoscaler.settings import Settings
from providers.base import Instance, NodeProvider
from providers.fake import FakeClock, FakeProvider
from runtime.gcs.schema import GcsKeys
from runtime.protocol import common_pb2
from runtime.protocol.states import NodeState


def cloud(provider: object) -> NodeProvider:
    """The concrete providers satisfy NodeProvider; mypy cannot see it while the protocol
    declares `config_model` as a mutable attribute."""
    return cast(NodeProvider, provider)


def cluster_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "cluster_name": "scenario",
        "max_workers": 10,
        "idle_timeout_minutes": 1,
        "provider": {"type": "fake"},
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 0}},
            "cpu": {"resources": {"CPU": 1}, "max_workers": 20},
        },
    }
    config.update(overrides)
    return config


# --- the GCS, played by the test -----------------------------------------------------------------


class Gcs(Protocol):
    def rows(self) -> list[GcsNode]: ...
    def put(self, node: GcsNode) -> None: ...
    def queue(self, shape: dict[str, float], count: int) -> None: ...
    def clear_queue(self) -> None: ...


class MemoryGcs:
    """The GCS's tables as the autoscaler reads them, kept in memory."""

    def __init__(self) -> None:
        self.nodes: dict[str, GcsNode] = {}
        self.demands: list[ResourceDemand] = []
        self.groups: list[PendingPlacementGroup] = []

    def view(self) -> GcsView:
        return GcsView(tuple(self.nodes.values()), tuple(self.demands), (), tuple(self.groups))

    def rows(self) -> list[GcsNode]:
        return list(self.nodes.values())

    def put(self, node: GcsNode) -> None:
        self.nodes[node.node_id] = node

    def queue(self, shape: dict[str, float], count: int) -> None:
        self.demands = [ResourceDemand(Shape.of(shape), count, DemandKind.TASK)]

    def clear_queue(self) -> None:
        self.demands = []

    def add_group(self, pg_id: str, strategy: str, bundles: Sequence[dict[str, float]]) -> None:
        shapes = tuple(Shape.of(b) for b in bundles)
        self.groups.append(PendingPlacementGroup(pg_id, PlacementStrategy(strategy), shapes))


class RedisGcs:
    """The GCS's rows written to Redis as the GCS writes them (protobuf node rows, JSON load)."""

    def __init__(self, client: redis.Redis, cluster_id: str) -> None:
        self.r = client
        self.keys = GcsKeys(cluster_id)

    def rows(self) -> list[GcsNode]:
        out = []
        for raw in self.r.hgetall(self.keys.nodes).values():  # type: ignore[union-attr]
            info = common_pb2.NodeInfo()
            info.ParseFromString(raw)
            out.append(node_from_proto(info))
        return out

    def put(self, node: GcsNode) -> None:
        info = common_pb2.NodeInfo(
            node_id=node.node_id,
            state=node.state,
            instance_id=node.instance_id,
            node_type=node.node_type,
            idle_since=node.idle_since,
        )
        info.total.update(node.total)
        info.available.update(node.available)
        self.r.hset(self.keys.nodes, node.node_id, info.SerializeToString())

    def queue(self, shape: dict[str, float], count: int) -> None:
        load = [{"shape": shape, "count": count, "infeasible": False, "kind": "task"}]
        self.r.hset(self.keys.load, "head-node", json.dumps(load))

    def clear_queue(self) -> None:
        self.r.hdel(self.keys.load, "head-node")


class GcsDrainer:
    """Answers as the GCS's DrainNode does: at once; an idle-only drain of a busy node is
    rejected; an accepted node is DRAINING and reports `drained` once it is idle."""

    def __init__(self, gcs: Gcs, clock: FakeClock) -> None:
        self.gcs, self.clock = gcs, clock
        self.calls: list[tuple[str, bool]] = []  # (node id, idle_only)

    def request_drain(
        self, node_id: str, *, reason: str, idle_only: bool, deadline_s: float = 0.0
    ) -> DrainAnswer:
        self.calls.append((node_id, idle_only))
        node = next((n for n in self.gcs.rows() if n.node_id == node_id), None)
        if node is None:
            return DrainAnswer(False, "unknown node")
        idle = node.idle_since > 0
        if idle_only and not idle:
            return DrainAnswer(False, "the node is busy: work arrived since the request")
        drain = NodeDrain(reason, self.clock(), drained=idle, leases=0 if idle else 1)
        self.gcs.put(dataclasses.replace(node, state=NodeState.DRAINING, drain=drain))
        return DrainAnswer(True)


# --- the scenario ----------------------------------------------------------------------------


class Rounds(Protocol):
    """What a scenario drives: the Monitor (Redis) or the bare Autoscaler (in memory)."""

    executor: Executor
    store: LifecycleStore

    @property
    def last_plan(self) -> Plan: ...

    def run_once(self) -> Any: ...


class Scenario:
    """One cluster: rounds on a FakeClock, the fake cloud, a test-played GCS."""

    def __init__(
        self,
        raw_config: dict[str, Any],
        log_dir: Path,
        *,
        redis_server: RedisServer | None = None,
        provider_class: type[FakeProvider] = FakeProvider,
        **settings: Any,
    ) -> None:
        self.clock = FakeClock()
        self.config = validate_config(raw_config)
        self.provider = self.new_provider(provider_class)
        self.settings = Settings(**settings)
        self.log_dir = log_dir
        self.cluster_id = new_cluster_id()
        self.memory: MemoryGcs | None = None
        self.gcs: Gcs
        if redis_server is not None:
            self.redis: redis.Redis | None = redis_server.client()
            self.gcs = RedisGcs(self.redis, self.cluster_id)
        else:
            self.redis = None
            self.memory = self.gcs = MemoryGcs()
            self.memory_store = InMemoryLifecycleStore()
        self.drainer: Any = GcsDrainer(self.gcs, self.clock)
        self._started: list[Rounds] = []
        self.monitor = self.new_monitor()

    def new_provider(self, cls: type[FakeProvider] = FakeProvider) -> FakeProvider:
        c = self.config
        return cls(c.cluster_name, c.provider, c.node_types_for_provider(), clock=self.clock)

    def new_monitor(self, **options: Any) -> Rounds:
        """A fresh process on the same store and cloud: nothing in memory but the store."""
        opts = MonitorOptions(self.cluster_id, settings=self.settings, log_dir=str(self.log_dir),
                              **options)
        rounds: Rounds
        if self.redis is not None:
            rounds = Monitor(self.config, cloud(self.provider), self.redis, opts,
                             drainer=self.drainer, clock=self.clock)
        else:
            assert self.memory is not None
            scaling = scaling_config(self.config, cloud(self.provider))
            executor = build_executor(self.config, cloud(self.provider), scaling, opts,
                                      self.drainer)
            rounds = Autoscaler(self.config, scaling, cloud(self.provider), self.memory_store,
                                executor, self.memory.view, clock=self.clock,
                                settings=self.settings)
        self._started.append(rounds)
        return rounds

    def close(self) -> None:
        for rounds in self._started:
            rounds.executor.shutdown()

    def round(self, monitor: Rounds | None = None) -> None:
        m = monitor or self.monitor
        m.run_once()
        m.executor.wait_idle()

    def settle(self, rounds: int = 4) -> None:
        """Rounds, with raylets registering for installed instances in between."""
        for _ in range(rounds):
            self.round()
            self.boot_raylets()

    # --- the GCS side ----------------------------------------------------------------------

    def boot_raylets(self) -> None:
        """Every instance whose start commands ran gets a registered, idle node."""
        installed = {instance_id for instance_id, _ in self.provider.commands}
        known = {n.instance_id for n in self.gcs.rows()}
        for instance in self.provider.list_instances():
            if instance.id in installed and instance.id not in known:
                total = self.config.node_type(instance.node_type).resources or {}
                self.put_node(f"node-{instance.id}", instance, dict(total), idle=True)

    def put_node(
        self, node_id: str, instance: Instance, total: dict[str, float], *, idle: bool
    ) -> None:
        self.gcs.put(GcsNode(node_id, instance.node_type, instance.id, total, dict(total),
                             self.clock() if idle else 0.0, NodeState.ALIVE))

    def set_idle(self, idle: bool) -> None:
        for node in self.gcs.rows():
            self.gcs.put(dataclasses.replace(node, idle_since=self.clock() if idle else 0.0))

    def queue(self, shape: dict[str, float], count: int) -> None:
        self.gcs.queue(shape, count)

    def clear_queue(self) -> None:
        self.gcs.clear_queue()

    # --- what happened -----------------------------------------------------------------------

    @property
    def store(self) -> LifecycleStore:
        return self.monitor.store

    def records(self) -> list[InstanceRecord]:
        return self.store.all()

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.records():
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
        return counts

    def live(self, node_type: str | None = None) -> list[Instance]:
        return [i for i in self.provider.list_instances() if node_type in (None, i.node_type)]

    def decisions(self, action: DecisionAction | None = None) -> list[Decision]:
        return [d for d in self.store.decisions(limit=200) if action in (None, d.action)]

"""`/metrics` in Prometheus's text format: read fresh at each scrape from the GCS's tables and
task events, each live node's store, the autoscaler's latest status and the job store (nothing
kept between scrapes)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from autoscaler.status import ClusterStatus
from autoscaler.web.state import ClusterReader, GcsTables
from runtime.jobs.model import JobInfo, JobStatus
from runtime.protocol.states import ActorState, NodeState, PlacementGroupState, TaskStatus


def shape_label(shape: dict[str, float]) -> str:
    return json.dumps({k: shape[k] for k in sorted(shape)}, separators=(",", ":"))


class ClusterCollector(Collector):
    def __init__(self, reader: ClusterReader, status: Callable[[], ClusterStatus | None],
                 jobs: Callable[[], list[JobInfo]]) -> None:
        self._reader, self._status, self._jobs = reader, status, jobs

    def collect(self) -> Iterator[Any]:
        tables = self._reader.tables()
        yield from _nodes(tables)
        yield from _stores(self._reader.store_stats(tables.nodes))
        yield from _demand(tables)
        yield from _actors_and_groups(tables)
        yield from _tasks(self._reader.tasks(limit=1))
        yield from _jobs(self._jobs())
        status = self._status()
        if status is not None:
            yield from _autoscaler(status)


def _nodes(tables: GcsTables) -> Iterator[Any]:
    by_state = GaugeMetricFamily("rayctl_nodes", "Nodes by state and node type",
                                 labels=["state", "node_type"])
    counts = Counter((NodeState.from_wire(n.state).value, n.node_type or "") for n in tables.nodes)
    for (state, node_type), n in sorted(counts.items()):
        by_state.add_metric([state, node_type], n)
    yield by_state
    total = GaugeMetricFamily("rayctl_resources_total", "Resources of live nodes",
                              labels=["resource"])
    used = GaugeMetricFamily("rayctl_resources_used", "Resources in use on live nodes",
                             labels=["resource"])
    node_total = GaugeMetricFamily("rayctl_node_resources_total", "A live node's resources",
                                   labels=["node_id", "node_type", "resource"])
    node_used = GaugeMetricFamily("rayctl_node_resources_used", "A live node's resources in use",
                                  labels=["node_id", "node_type", "resource"])
    sums_total: Counter[str] = Counter()
    sums_used: Counter[str] = Counter()
    for n in tables.nodes:
        if n.state == NodeState.DEAD.wire:
            continue
        for name, amount in n.total.items():
            in_use = max(0.0, amount - n.available.get(name, 0.0))
            sums_total[name] += amount
            sums_used[name] += in_use
            node_total.add_metric([n.node_id, n.node_type, name], amount)
            node_used.add_metric([n.node_id, n.node_type, name], in_use)
    for name in sorted(sums_total):
        total.add_metric([name], sums_total[name])
        used.add_metric([name], sums_used[name])
    yield from (total, used, node_total, node_used)


def _stores(answers: list[tuple[Any, Any]]) -> Iterator[Any]:
    used = GaugeMetricFamily("rayctl_object_store_used_bytes", "Bytes of objects in a live "
                             "node's shared-memory store", labels=["node_id", "node_type"])
    capacity = GaugeMetricFamily("rayctl_object_store_capacity_bytes", "A live node's "
                                 "shared-memory store capacity", labels=["node_id", "node_type"])
    for node, stats in answers:
        used.add_metric([node.node_id, node.node_type], stats.object_store_used)
        capacity.add_metric([node.node_id, node.node_type], stats.object_store_capacity)
    yield used
    yield capacity


def _tasks(reply: Any) -> Iterator[Any]:
    family = GaugeMetricFamily("rayctl_tasks", "Tasks the GCS holds events of, by state",
                               labels=["state"])
    for status in TaskStatus:
        family.add_metric([status.value], reply.by_status.get(status.wire, 0))
    yield family
    dropped = GaugeMetricFamily("rayctl_task_events_dropped", "Tasks whose events were not kept "
                                "(owner buffers full, or past the GCS's bound)")
    dropped.add_metric([], reply.dropped)
    yield dropped


def _demand(tables: GcsTables) -> Iterator[Any]:
    pending = GaugeMetricFamily("rayctl_pending_demand", "Queued tasks and actors by shape "
                                "(what the autoscaler scales for)", labels=["shape", "kind"])
    infeasible = GaugeMetricFamily("rayctl_infeasible_demand", "Queued work no node and no "
                                   "launchable node type can ever fit", labels=["shape", "kind"])
    counts: Counter[tuple[str, str]] = Counter()
    never: Counter[tuple[str, str]] = Counter()
    for entries in tables.load.values():
        for e in entries:
            (never if e.infeasible else counts)[(shape_label(e.shape), e.kind.value)] += e.count
    for a in tables.actors:
        if a.state in (ActorState.PENDING.wire, ActorState.RESTARTING.wire):
            counts[(shape_label(dict(a.resources)), "actor")] += 1
    for (shape, kind), n in sorted(counts.items()):
        pending.add_metric([shape, kind], n)
    for (shape, kind), n in sorted(never.items()):
        infeasible.add_metric([shape, kind], n)
    yield from (pending, infeasible)


def _actors_and_groups(tables: GcsTables) -> Iterator[Any]:
    actors = GaugeMetricFamily("rayctl_actors", "Actors by state", labels=["state"])
    counts = Counter(ActorState.from_wire(a.state).value for a in tables.actors)
    for state in ActorState:
        actors.add_metric([state.value], counts.get(state.value, 0))
    yield actors
    groups = GaugeMetricFamily("rayctl_placement_groups", "Placement groups by state",
                               labels=["state"])
    counts = Counter(PlacementGroupState.from_wire(g.state).value for g in tables.placement_groups)
    for pg_state in PlacementGroupState:
        groups.add_metric([pg_state.value], counts.get(pg_state.value, 0))
    yield groups
    drivers = GaugeMetricFamily("rayctl_drivers", "Drivers (jobs that called init()) by state",
                                labels=["state"])
    running = sum(1 for r in tables.drivers.values() if r["end"] is None)
    drivers.add_metric(["RUNNING"], running)
    drivers.add_metric(["FINISHED"], len(tables.drivers) - running)
    yield drivers


def _jobs(jobs: list[JobInfo]) -> Iterator[Any]:
    family = GaugeMetricFamily("rayctl_jobs", "Submitted jobs by status", labels=["status"])
    counts = Counter(j.status for j in jobs)
    for status in JobStatus:
        family.add_metric([status.value], counts.get(status, 0))
    yield family


def _autoscaler(status: ClusterStatus) -> Iterator[Any]:
    pending = GaugeMetricFamily("rayctl_autoscaler_pending_instances", "Instances being "
                                "launched or installed", labels=["node_type", "status"])
    for (node_type, state), n in sorted(Counter((p.node_type, p.status.value)
                                                for p in status.pending).items()):
        pending.add_metric([node_type, state], n)
    failures = GaugeMetricFamily("rayctl_autoscaler_launch_failures", "Launch and install "
                                 "failures in the last hour", labels=["node_type", "status"])
    for (node_type, state), n in sorted(Counter((f.node_type, f.status.value)
                                                for f in status.failures).items()):
        failures.add_metric([node_type, state], n)
    decisions = GaugeMetricFamily("rayctl_autoscaler_recent_decisions", "The autoscaler's "
                                  "recent decisions (the status's window) by action and cause",
                                  labels=["action", "cause"])
    for (action, cause), n in sorted(Counter(
            (d.action.value, d.cause.value if d.cause else "") for d in status.decisions).items()):
        decisions.add_metric([action, cause], n)
    unavailable = GaugeMetricFamily("rayctl_autoscaler_unavailable_offerings", "Offerings (or "
                                    "whole node types) marked unavailable", labels=["node_type"])
    for node_type, n in sorted(Counter(u.node_type for u in status.unavailable).items()):
        unavailable.add_metric([node_type], n)
    age = GaugeMetricFamily("rayctl_autoscaler_status_timestamp_seconds", "When the autoscaler "
                            "last wrote its status (unix seconds)")
    age.add_metric([], status.at)
    yield from (pending, failures, decisions, unavailable, age)

"""planner.plan: table-driven cases with exact expected plans (launches by type, drains,
terminations, infeasible shapes), one table per policy concern."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from autoscaler.lifecycle import InstanceStatus
from autoscaler.model import (
    ClusterSnapshot,
    InstanceInfo,
    LaunchCause,
    Node,
    NodeTypeSpec,
    PendingPlacementGroup,
    PlacementStrategy,
    Plan,
    ResourceDemand,
    ScalingConfig,
    Shape,
    TerminationCause,
    UnavailableType,
)
from autoscaler.planner import plan

NOW = 1000.0


# --- builders ---------------------------------------------------------------------------------


def T(
    name: str, max: int = 10, min: int = 0, idle: float | None = None, h: str = "h1", **res: float
) -> NodeTypeSpec:
    return NodeTypeSpec(
        name, res, min_workers=min, max_workers=max, idle_timeout_s=idle, launch_config_hash=h
    )


def config(
    *types: NodeTypeSpec, max_workers: int = 100, speed: float = 100.0, idle: float = 300.0
) -> ScalingConfig:
    # speed 100 by default so upscaling_speed only matters in its own table
    return ScalingConfig.of(
        list(types), max_workers=max_workers, upscaling_speed=speed, idle_timeout_s=idle
    )


@dataclass
class W:
    """A worker: an instance and (unless pending) its registered node."""

    id: str
    node_type: str
    total: Mapping[str, float]
    free: Mapping[str, float] | None = None  # None: all free
    idle_for: float | None = None  # seconds idle at NOW; None: busy
    h: str = "h1"
    status: InstanceStatus = InstanceStatus.RAYLET_RUNNING
    joined_ago: float | None = None  # seconds since its raylet registered; None: long ago

    def instance(self) -> InstanceInfo:
        since = 0.0 if self.joined_ago is None else NOW - self.joined_ago
        return InstanceInfo(
            f"i-{self.id}", self.node_type, self.status, self.h, launched_at=0.0,
            running_since=since,
        )

    def node(self) -> Node | None:
        if self.status != InstanceStatus.RAYLET_RUNNING:
            return None
        idle_since = None if self.idle_for is None else NOW - self.idle_for
        free = self.total if self.free is None else self.free
        return Node(self.id, self.node_type, self.total, free, f"i-{self.id}", idle_since)


def idle(id: str, node_type: str, total: Mapping[str, float], idle_for: float, **kw: object) -> W:
    return W(id, node_type, total, idle_for=idle_for, **kw)  # type: ignore[arg-type]


def pending(
    id: str, node_type: str, status: InstanceStatus = InstanceStatus.REQUESTED, h: str = "h1"
) -> W:
    return W(id, node_type, {}, status=status, h=h)


def snap(
    workers: Sequence[W] = (),
    demand: Sequence[tuple[Mapping[str, float], int]] = (),
    pgs: Sequence[tuple[str, Sequence[Mapping[str, float]]]] = (),
    requests: Sequence[Mapping[str, float]] = (),
    unavailable: Sequence[tuple[str, float]] = (),
    head: Mapping[str, float] | None = None,
) -> ClusterSnapshot:
    nodes = [n for w in workers if (n := w.node()) is not None]
    if head is not None:
        nodes.append(Node("head", "head", head, head, is_head=True))
    return ClusterSnapshot(
        nodes=tuple(nodes),
        instances=tuple(w.instance() for w in workers),
        demands=tuple(ResourceDemand(Shape.of(s), c) for s, c in demand),
        placement_groups=tuple(
            PendingPlacementGroup(
                f"pg-{strategy}", PlacementStrategy(strategy), tuple(Shape.of(b) for b in bundles)
            )
            for strategy, bundles in pgs
        ),
        requested_bundles=tuple(Shape.of(b) for b in requests),
        unavailable=tuple(UnavailableType(t, until) for t, until in unavailable),
    )


@dataclass
class Case:
    id: str
    config: ScalingConfig
    snapshot: ClusterSnapshot
    launches: dict[str, int] = field(default_factory=dict)
    drains: list[str] = field(default_factory=list)
    terminates: list[str] = field(default_factory=list)
    infeasible: list[Mapping[str, float]] = field(default_factory=list)


def check(case: Case) -> Plan:
    result = plan(case.snapshot, case.config, NOW)
    assert result.launch_counts() == case.launches
    assert result.drained_node_ids() == sorted(case.drains)
    assert sorted(t.instance_id for t in result.terminates) == sorted(case.terminates)
    assert sorted(i.shape for i in result.infeasible) == sorted(
        Shape.of(s) for s in case.infeasible
    )
    reasons = [a.reason for a in result.launches] + [d.reason for d in result.drains]
    reasons += [t.reason for t in result.terminates] + [i.reason for i in result.infeasible]
    assert all(reasons), f"an action without a reason in {result}"
    return result


def table(*cases: Case) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


CPU1, CPU4 = {"CPU": 1}, {"CPU": 4}
cpu4 = T("cpu4", CPU=4)
gpu = T("gpu", CPU=8, GPU=1)

# --- min_workers, scale-up, free capacity, type choice -----------------------------------------


@table(
    Case("min_workers from zero", config(T("cpu4", min=2, CPU=4)), snap(), {"cpu4": 2}),
    Case(
        "min_workers counts existing",
        config(T("cpu4", min=2, CPU=4)),
        snap([W("a", "cpu4", CPU4)]),
        {"cpu4": 1},
    ),
    Case(
        "min_workers counts pending",
        config(T("cpu4", min=2, CPU=4)),
        snap([pending("a", "cpu4"), pending("b", "cpu4")]),
    ),
    Case(
        "min_workers above max is capped",
        config(T("cpu4", min=5, max=3, CPU=4)),
        snap(),
        {"cpu4": 3},
    ),
    Case("scale up from queued shapes", config(cpu4), snap(demand=[(CPU1, 6)]), {"cpu4": 2}),
    Case(
        "free capacity used first",
        config(cpu4),
        snap([W("a", "cpu4", CPU4, free={"CPU": 3})], demand=[(CPU1, 3)]),
    ),
    Case(
        "only the overflow launches",
        config(cpu4),
        snap([W("a", "cpu4", CPU4, free={"CPU": 3})], demand=[(CPU1, 5)]),
        {"cpu4": 1},
    ),
    Case(
        "pending node capacity counts",
        config(cpu4),
        snap([pending("a", "cpu4")], demand=[(CPU1, 4)]),
    ),
    Case("head capacity counts", config(cpu4), snap(demand=[(CPU1, 2)], head={"CPU": 2})),
    Case(
        "least waste: small type for a little work",
        config(T("cpu2", CPU=2), T("cpu8", CPU=8)),
        snap(demand=[(CPU1, 2)]),
        {"cpu2": 1},
    ),
    Case(
        "least waste: big type when it fills exactly",
        config(T("cpu2", CPU=2), T("cpu8", CPU=8)),
        snap(demand=[(CPU1, 8)]),
        {"cpu8": 1},
    ),
    Case(
        "least waste: 3 x CPU 3 on 3-CPU nodes",
        config(T("cpu3", CPU=3), T("cpu8", CPU=8)),
        snap(demand=[({"CPU": 3}, 3)]),
        {"cpu3": 3},
    ),
    Case("CPU work avoids the GPU type", config(gpu, cpu4), snap(demand=[(CPU1, 8)]), {"cpu4": 2}),
    Case(
        "CPU work avoids GPU even with the CPU type capped",
        config(gpu, T("cpu4", max=1, CPU=4)),
        snap(demand=[(CPU1, 8)]),
        {"cpu4": 1},
    ),
    Case(
        "CPU work too big for CPU types may use GPU type",
        config(gpu, cpu4),
        snap(demand=[({"CPU": 6}, 1)]),
        {"gpu": 1},
    ),
    Case(
        "GPU work goes to the GPU type",
        config(gpu, cpu4),
        snap(demand=[({"CPU": 1, "GPU": 1}, 2)]),
        {"gpu": 2},
    ),
    Case(
        "custom resource picks its type",
        config(cpu4, T("acc", CPU=4, acc=2)),
        snap(demand=[({"acc": 1}, 4)]),
        {"acc": 2},
    ),
    Case(
        "infeasible GPU 8 reported, nothing launched",
        config(gpu, cpu4),
        snap(demand=[({"GPU": 8}, 3)]),
        infeasible=[{"GPU": 8}],
    ),
    Case(
        "infeasible does not block the rest",
        config(gpu, cpu4),
        snap(demand=[({"GPU": 8}, 1), (CPU1, 4)]),
        {"cpu4": 1},
        infeasible=[{"GPU": 8}],
    ),
    Case(
        "a node that joined 0.5 s ago runs the queued work it was launched for",
        config(cpu4),
        snap([W("a", "cpu4", CPU4, free={}, joined_ago=0.5)], demand=[(CPU1, 4)]),
    ),
    Case(
        "a node that joined 0.5 s ago holds only its own size of the queue",
        config(cpu4),
        snap([W("a", "cpu4", CPU4, free={}, joined_ago=0.5)], demand=[(CPU1, 6)]),
        {"cpu4": 1},
    ),
    Case(
        "a node busy for 5 s: the queue is new work",
        config(cpu4),
        snap([W("a", "cpu4", CPU4, free={}, joined_ago=5.0)], demand=[(CPU1, 4)]),
        {"cpu4": 1},
    ),
    Case(
        "fits an existing node only: waits, not infeasible",
        config(cpu4),
        snap([W("a", "big", {"CPU": 64}, free={})], demand=[({"CPU": 32}, 1)]),
    ),
    Case(
        "type with max_workers 0 is not launchable",
        config(T("big", max=0, CPU=64)),
        snap(demand=[({"CPU": 32}, 1)]),
        infeasible=[{"CPU": 32}],
    ),
)
def test_scale_up(case: Case) -> None:
    check(case)


# --- upscaling_speed and max caps ---------------------------------------------------------------


def busy(n: int, node_type: str = "cpu4") -> list[W]:
    return [W(f"b{i}", node_type, CPU4, free={}) for i in range(n)]


@table(
    Case(
        "speed: 5 at once from zero",
        config(T("cpu4", max=50, CPU=4), speed=1.0),
        snap(demand=[(CPU4, 20)]),
        {"cpu4": 5},
    ),
    Case(
        "speed: 1.0 x 10 running",
        config(T("cpu4", max=50, CPU=4), speed=1.0),
        snap(busy(10), demand=[(CPU4, 20)]),
        {"cpu4": 10},
    ),
    Case(
        "speed: pending nodes count",
        config(T("cpu4", max=50, CPU=4), speed=1.0),
        snap(
            [*busy(10), pending("p1", "cpu4"), pending("p2", "cpu4"), pending("p3", "cpu4")],
            demand=[(CPU4, 20)],
        ),
        {"cpu4": 7},
    ),
    Case(
        "speed: 0.5 x 20 running",
        config(T("cpu4", max=50, CPU=4), speed=0.5),
        snap(busy(20), demand=[(CPU4, 20)]),
        {"cpu4": 10},
    ),
    Case(
        "speed: min_workers not held back",
        config(T("cpu4", min=8, max=50, CPU=4), speed=1.0),
        snap(),
        {"cpu4": 8},
    ),
    Case(
        "speed: request_resources not held back",
        config(T("cpu4", max=50, CPU=4), speed=1.0),
        snap(requests=[CPU4] * 9),
        {"cpu4": 9},
    ),
    Case("per-type max", config(T("cpu4", max=3, CPU=4)), snap(demand=[(CPU4, 20)]), {"cpu4": 3}),
    Case(
        "per-type max counts existing",
        config(T("cpu4", max=3, CPU=4)),
        snap(busy(2), demand=[(CPU4, 20)]),
        {"cpu4": 1},
    ),
    Case(
        "per-type max falls back to the next type",
        config(T("cpu3", max=3, CPU=3), T("cpu8", CPU=8)),
        snap(demand=[({"CPU": 3}, 5)]),
        {"cpu3": 3, "cpu8": 1},
    ),
    Case(
        "global max",
        config(T("cpu4", max=50, CPU=4), max_workers=4),
        snap(demand=[(CPU4, 20)]),
        {"cpu4": 4},
    ),
    Case(
        "global max counts existing",
        config(T("cpu4", max=50, CPU=4), max_workers=4),
        snap(busy(3), demand=[(CPU4, 20)]),
        {"cpu4": 1},
    ),
    Case(
        "global max trims min_workers newest first",
        config(T("a", min=3, CPU=4), T("b", min=3, CPU=4), max_workers=4),
        snap(),
        {"a": 3, "b": 1},
    ),
    Case(
        "lowered max: pending first, then longest idle",
        config(T("cpu4", max=1, CPU=4)),
        snap(
            [
                W("x", "cpu4", CPU4, free={}),
                idle("y", "cpu4", CPU4, 10),
                idle("z", "cpu4", CPU4, 50),
                pending("p", "cpu4"),
            ]
        ),
        drains=["z", "y"],
        terminates=["i-p"],
    ),
)
def test_speed_and_caps(case: Case) -> None:
    check(case)


# --- idle drain and replacement -----------------------------------------------------------------


@table(
    Case(
        "idle past timeout is drained",
        config(cpu4),
        snap([idle("a", "cpu4", CPU4, 400)]),
        drains=["a"],
    ),
    Case("idle under timeout stays", config(cpu4), snap([idle("a", "cpu4", CPU4, 200)])),
    Case(
        "per-type idle_timeout_s overrides",
        config(T("cpu4", idle=100, CPU=4)),
        snap([idle("a", "cpu4", CPU4, 200)]),
        drains=["a"],
    ),
    Case(
        "per-type override can be longer",
        config(T("cpu4", idle=900, CPU=4)),
        snap([idle("a", "cpu4", CPU4, 400)]),
    ),
    Case("busy node stays", config(cpu4), snap([W("a", "cpu4", CPU4, free={"CPU": 3})])),
    Case(
        "never below min_workers: longest idle goes",
        config(T("cpu4", min=1, CPU=4)),
        snap([idle("a", "cpu4", CPU4, 400), idle("b", "cpu4", CPU4, 900)]),
        drains=["b"],
    ),
    Case(
        "never a node the demand needs",
        config(cpu4),
        snap([idle("a", "cpu4", CPU4, 400)], demand=[(CPU1, 2)]),
    ),
    Case(
        "never a node request_resources needs",
        config(cpu4),
        snap([idle("a", "cpu4", CPU4, 400)], requests=[CPU1]),
    ),
    Case(
        "demand on busy nodes leaves the idle one drainable",
        config(cpu4),
        snap(
            [W("a", "cpu4", CPU4, free={"CPU": 2}), idle("b", "cpu4", CPU4, 400)],
            demand=[(CPU1, 2)],
        ),
        drains=["b"],
    ),
    Case(
        "never the head",
        config(cpu4),
        ClusterSnapshot(nodes=(Node("head", "cpu4", CPU4, CPU4, idle_since=0.0, is_head=True),)),
    ),
    Case(
        "replace outdated: idle drained",
        config(T("cpu4", h="h2", CPU=4)),
        snap([W("a", "cpu4", CPU4, idle_for=5)]),
        drains=["a"],
    ),
    Case(
        "replace outdated: busy kept until idle",
        config(T("cpu4", h="h2", CPU=4)),
        snap([W("a", "cpu4", CPU4, free={})]),
    ),
    Case(
        "replace outdated: pending terminated",
        config(T("cpu4", h="h2", CPU=4)),
        snap([pending("p", "cpu4")]),
        terminates=["i-p"],
    ),
    Case(
        "replace outdated: min_workers relaunches",
        config(T("cpu4", min=1, h="h2", CPU=4)),
        snap([W("a", "cpu4", CPU4, idle_for=5)]),
        {"cpu4": 1},
        drains=["a"],
    ),
    Case(
        "type removed from config: drained",
        config(cpu4),
        snap([W("a", "old", CPU4, idle_for=5)]),
        drains=["a"],
    ),
)
def test_drain_and_replace(case: Case) -> None:
    check(case)


# --- request_resources, placement groups, unavailable types -----------------------------------


cpu1 = T("cpu1", CPU=1)


@table(
    Case(
        "request 2 CPUs on an empty cluster", config(cpu1), snap(requests=[CPU1, CPU1]), {"cpu1": 2}
    ),
    # Ray: the busy node's total counts ("as if idle"): 2 CPUs requested, 1 exists -> 1 more
    Case(
        "request 2 CPUs with a busy 1-CPU node",
        config(cpu1),
        snap([W("a", "cpu1", CPU1, free={})], requests=[CPU1, CPU1]),
        {"cpu1": 1},
    ),
    Case(
        "request already met by totals",
        config(cpu1),
        snap([W("a", "cpu1", CPU1, free={}), W("b", "cpu1", CPU1, free={})], requests=[CPU1, CPU1]),
    ),
    Case(
        "request nodes take queued work too",
        config(cpu4),
        snap(requests=[CPU4], demand=[(CPU1, 4)]),
        {"cpu4": 1},
    ),
    Case(
        "request fitting no type is infeasible",
        config(cpu1),
        snap(requests=[{"GPU": 1}]),
        infeasible=[{"GPU": 1}],
    ),
    Case(
        "STRICT_SPREAD: one node per bundle",
        config(cpu4),
        snap(pgs=[("STRICT_SPREAD", [CPU1] * 3)]),
        {"cpu4": 3},
    ),
    Case(
        "STRICT_SPREAD uses a free existing node",
        config(cpu4),
        snap([idle("a", "cpu4", CPU4, 10)], pgs=[("STRICT_SPREAD", [CPU1] * 3)]),
        {"cpu4": 2},
    ),
    Case(
        "STRICT_SPREAD over the cap launches nothing",
        config(cpu4, max_workers=2),
        snap(pgs=[("STRICT_SPREAD", [CPU1] * 3)]),
    ),
    Case(
        "STRICT_PACK: one node fits the total",
        config(cpu4, T("cpu8", CPU=8)),
        snap(pgs=[("STRICT_PACK", [{"CPU": 2}] * 3)]),
        {"cpu8": 1},
    ),
    Case(
        "STRICT_PACK total fits no type",
        config(cpu4, T("cpu8", CPU=8)),
        snap(pgs=[("STRICT_PACK", [{"CPU": 4}] * 3)]),
        infeasible=[{"CPU": 12}],
    ),
    Case(
        "PACK: on one node when it fits",
        config(cpu4, T("cpu8", CPU=8)),
        snap(pgs=[("PACK", [{"CPU": 2}] * 2)]),
        {"cpu4": 1},
    ),
    Case(
        "PACK: split when no type holds it all",
        config(cpu4),
        snap(pgs=[("PACK", [CPU4] * 3)]),
        {"cpu4": 3},
    ),
    Case(
        "SPREAD: new nodes packed, not one per bundle",
        config(cpu4),
        snap(pgs=[("SPREAD", [CPU1] * 4)]),
        {"cpu4": 1},
    ),
    Case(
        "PG bundle fitting no type: whole group infeasible",
        config(cpu4),
        snap(pgs=[("PACK", [CPU1, {"GPU": 1}])]),
        infeasible=[{"GPU": 1}],
    ),
    Case(
        "PG launches bypass upscaling_speed",
        config(T("cpu4", max=50, CPU=4), speed=1.0),
        snap(pgs=[("STRICT_SPREAD", [CPU1] * 8)]),
        {"cpu4": 8},
    ),
    Case(
        "unavailable type falls back to another",
        config(cpu4, T("cpu8", CPU=8)),
        snap(demand=[(CPU4, 2)], unavailable=[("cpu4", NOW + 60)]),
        {"cpu8": 1},
    ),
    Case(
        "unavailability expires",
        config(cpu4, T("cpu8", CPU=8)),
        snap(demand=[(CPU4, 1)], unavailable=[("cpu4", NOW - 1)]),
        {"cpu4": 1},
    ),
    Case(
        "only fitting type unavailable: waits",
        config(cpu4),
        snap(demand=[(CPU4, 1)], unavailable=[("cpu4", NOW + 60)]),
    ),
    Case(
        "min_workers of an unavailable type waits",
        config(T("cpu4", min=1, CPU=4)),
        snap(unavailable=[("cpu4", NOW + 60)]),
    ),
)
def test_requests_groups_unavailable(case: Case) -> None:
    check(case)


def test_waiting_demand_says_why() -> None:
    result = check(
        Case("", config(cpu4), snap(demand=[(CPU4, 1)], unavailable=[("cpu4", NOW + 60)]))
    )
    assert result.notes == ("queued: 1 x {CPU: 4} waits: cpu4 unavailable until t=1060",)
    capped = check(Case("", config(cpu4, max_workers=1), snap(busy(1), demand=[(CPU4, 1)])))
    assert capped.notes == ("queued: 1 x {CPU: 4} waits: cluster at max_workers=1",)


def test_reasons_name_the_cause() -> None:
    result = plan(snap([idle("a", "cpu4", CPU4, 400)], demand=[({"GPU": 8}, 2)]), config(cpu4), NOW)
    assert result.drains[0].reason == "idle for 400s (idle timeout 300s)"
    assert "{GPU: 8} fits no node and no node type" in result.infeasible[0].reason
    launch = plan(snap(demand=[(CPU1, 6)]), config(cpu4), NOW).launches[0]
    assert launch.reason == "queued 6 x {CPU: 1} with no free capacity"


def test_plan_is_deterministic() -> None:
    workers = [W(f"n{i}", "cpu4", CPU4, free={"CPU": i % 4}, idle_for=None) for i in range(30)]
    snapshot = snap(workers, demand=[(CPU1, 40), ({"CPU": 3}, 7), ({"CPU": 1, "GPU": 1}, 3)])
    cfg = config(cpu4, gpu, T("cpu16", CPU=16))
    assert plan(snapshot, cfg, NOW) == plan(snapshot, cfg, NOW)


def test_every_action_carries_its_cause() -> None:
    cfg = config(T("cpu4", min=1, CPU=4), gpu)

    def causes(snapshot: ClusterSnapshot) -> list[tuple[LaunchCause, str, int]]:
        return [(a.cause, a.node_type, a.count) for a in plan(snapshot, cfg, NOW).launches]

    assert causes(snap()) == [(LaunchCause.MIN_WORKERS, "cpu4", 1)]
    assert causes(snap(demand=[(CPU1, 6)])) == [
        (LaunchCause.MIN_WORKERS, "cpu4", 1),
        (LaunchCause.QUEUED_DEMAND, "cpu4", 1),  # the min_workers node takes four of the six
    ]
    assert causes(snap(requests=[{"GPU": 1}]))[1:] == [(LaunchCause.REQUEST_RESOURCES, "gpu", 1)]
    assert causes(snap(pgs=[("STRICT_SPREAD", [CPU4] * 3)]))[1:] == [
        (LaunchCause.PLACEMENT_GROUP, "cpu4", 2)
    ]
    outdated = W("old", "cpu4", CPU4, idle_for=10, h="h0")
    replaced = plan(snap([outdated]), cfg, NOW)
    assert [(a.cause, a.count) for a in replaced.launches] == [(LaunchCause.REPLACEMENT, 1)]
    assert [(d.cause, d.idle_only) for d in replaced.drains] == [
        (TerminationCause.OUTDATED, False)  # a config change drains busy work too, once idle
    ]
    idle_drain = plan(snap([idle("a", "cpu4", CPU4, 400), idle("b", "cpu4", CPU4, 400)]), cfg, NOW)
    assert [(d.cause, d.idle_only) for d in idle_drain.drains] == [(TerminationCause.IDLE, True)]


def test_over_caps_name_which_cap() -> None:
    workers = [W(f"n{i}", "cpu4", CPU4) for i in range(3)]
    per_type = plan(snap(workers), config(T("cpu4", max=1, CPU=4)), NOW)
    assert {d.cause for d in per_type.drains} == {TerminationCause.OVER_TYPE_MAX}
    assert all(not d.idle_only for d in per_type.drains)  # busy nodes drain for a cap
    cluster = plan(snap(workers), config(cpu4, max_workers=2), NOW)
    assert [d.cause for d in cluster.drains] == [TerminationCause.OVER_CLUSTER_MAX]
    launching = plan(snap([pending("p", "cpu4")]), config(T("cpu4", max=0, CPU=4)), NOW)
    assert [t.cause for t in launching.terminates] == [TerminationCause.OVER_TYPE_MAX]


def test_a_placement_groups_launches_form_one_gang() -> None:
    cfg = config(cpu4, gpu)
    result = plan(snap(pgs=[("STRICT_SPREAD", [CPU4, CPU4, {"GPU": 1}])]), cfg, NOW)
    assert sorted((a.node_type, a.count, a.gang) for a in result.launches) == [
        ("cpu4", 2, "pg-STRICT_SPREAD"),
        ("gpu", 1, "pg-STRICT_SPREAD"),
    ]
    plain = plan(snap(demand=[(CPU1, 6)]), cfg, NOW)
    assert [a.gang for a in plain.launches] == [""]

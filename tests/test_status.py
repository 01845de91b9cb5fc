"""`rayctl status` content: composed from what one round saw (nodes, records, plan, decisions),
rendered as text a person reads, and round-tripped as JSON for `--json` and get_status()."""

from __future__ import annotations

import json

import pytest

from autoscaler.decisions import Decision, DecisionAction
from autoscaler.drain import NodeDrain
from autoscaler.lifecycle import InstanceStatus, new_instance, transition
from autoscaler.lifecycle_store import OfferingMark
from autoscaler.model import (
    DemandKind,
    Infeasible,
    LaunchCause,
    Plan,
    ResourceDemand,
    Shape,
    TerminationCause,
)
from autoscaler.observe import GcsNode, GcsView
from autoscaler.status import ClusterStatus, compose, render
from providers.base import Offering
from runtime.protocol.states import NodeState

S = InstanceStatus
NOW = 1_700_000_000.0


def example() -> ClusterStatus:
    head = GcsNode("n-head", "head", "", {"CPU": 2.0}, {"CPU": 2.0}, NOW - 30, NodeState.ALIVE, True)
    busy = GcsNode("n-1", "cpu", "fake-1", {"CPU": 4.0}, {"CPU": 1.0}, 0.0, NodeState.ALIVE)
    dead = GcsNode("n-0", "cpu", "fake-0", {"CPU": 4.0}, {}, 0.0, NodeState.DEAD)
    gcs = GcsView(
        nodes=(head, busy, dead),
        demands=(ResourceDemand(Shape.of({"CPU": 1}), 6, DemandKind.TASK),),
        requested_bundles=(Shape.of({"CPU": 1}), Shape.of({"CPU": 1})),
    )
    pending = transition(
        new_instance("i-2", "cpu", NOW - 50, "6 tasks"),
        S.REQUESTED,
        NOW - 40,
        "launch sent",
        request_id="i-2",
    )
    failed = transition(
        transition(new_instance("i-3", "gpu", NOW - 90, "x"), S.REQUESTED, NOW - 80, "sent"),
        S.ALLOCATION_FAILED,
        NOW - 70,
        "no capacity for p3/us-a/on-demand\nsecond line",
    )
    plan = Plan(
        infeasible=(Infeasible(Shape.of({"GPU": 8}), 1, "no node type has GPU: 8"),),
        notes=("upscaling_speed=1: 3 launch(es) held back",),
    )
    decisions = [
        Decision(NOW - 30, DecisionAction.DRAIN, TerminationCause.IDLE, "i-1", "cpu", "idle 400s"),
        Decision(NOW - 40, DecisionAction.LAUNCH, LaunchCause.QUEUED_DEMAND, "i-2", "cpu",
                 "6 tasks of {CPU: 1} wait"),
        Decision(NOW - 60, DecisionAction.ALLOCATION_FAILED, None, "i-0", "cpu", "old entry"),
    ]
    marks = [
        OfferingMark("gpu", Offering("p3", "us-a"), NOW + 240, "no capacity for p3/us-a"),
        OfferingMark("tpu", None, NOW + 600, "quota exceeded: tpus"),
    ]
    return compose(gcs, [pending, failed], plan, decisions, marks, NOW)


def test_compose_sorts_nodes_and_counts_usage() -> None:
    status = example()
    assert [n.node_id for n in status.nodes] == ["n-head", "n-1"]  # dead nodes left out
    assert status.nodes[0].idle_s == 30.0 and status.nodes[1].idle_s is None
    assert status.resources() == ({"CPU": 3.0}, {"CPU": 6.0})
    assert [(p.instance_id, p.status, p.for_s) for p in status.pending] == [
        ("i-2", "REQUESTED", 40.0)
    ]
    assert [(f.instance_id, f.status) for f in status.failures] == [("i-3", "ALLOCATION_FAILED")]
    assert [(d.kind, d.count) for d in status.demand] == [("task", 6), ("request_resources", 2)]


def test_render_shows_what_a_person_needs() -> None:
    text = render(example(), now=NOW)
    for expected in [
        "Active:\n 1 cpu",
        "Idle:\n head n-head (head) idle 30s",
        "Pending:\n cpu i-2: REQUESTED for 40s",
        " gpu i-3: ALLOCATION_FAILED: no capacity for p3/us-a/on-demand (+1 lines, see -v)",
        " 3/6 CPU",
        " {CPU: 1}: 6+ pending tasks",
        " {CPU: 1}: 2 from request_resources",
        "Infeasible (no node type can run these; nothing will be launched)\n {GPU: 8} x1",
        " 40s ago launch i-2 (cpu) [queued_demand]: 6 tasks of {CPU: 1} wait",
        " 30s ago drain i-1 (cpu) [idle]: idle 400s",
        " 60s ago allocation_failed i-0 (cpu): old entry",  # stored before causes: none shown
        "upscaling_speed=1: 3 launch(es) held back",
        "Unavailable offerings (skipped until the time shown)\n gpu p3/us-a/on-demand until ",
        " tpu (every offering) until ",
    ]:
        assert expected in text, f"missing {expected!r} in:\n{text}"
    assert "Instance history" not in text


def test_verbose_adds_each_instance_history() -> None:
    text = render(example(), verbose=True, now=NOW)
    assert " i-2 cpu -\n   50s ago QUEUED: 6 tasks\n   40s ago REQUESTED: launch sent" in text
    assert (
        "   90s ago QUEUED: x\n   80s ago REQUESTED: sent\n"
        "   70s ago ALLOCATION_FAILED: no capacity"
        in text
    )


def test_json_round_trip() -> None:
    status = example()
    assert ClusterStatus.from_json(status.to_json()) == status
    data = json.loads(status.to_json())  # what `rayctl status --json` prints
    assert [(d["action"], d["cause"]) for d in data["decisions"]] == [
        ("drain", "idle"),
        ("launch", "queued_demand"),
        ("allocation_failed", None),
    ]
    assert [(u["node_type"], u["offering"]) for u in data["unavailable"]] == [
        ("gpu", "p3/us-a/on-demand"),
        ("tpu", None),
    ]


def test_empty_cluster_says_so() -> None:
    text = render(compose(GcsView(), [], Plan(), [], [], NOW), now=NOW)
    for expected in [
        "(no active nodes)",
        "(no pending nodes)",
        "(no failures)",
        "(no resource demands)",
        "(none)",
    ]:
        assert expected in text


def draining_example() -> ClusterStatus:
    held = GcsNode(
        "n-2", "cpu", "fake-2", {"CPU": 4.0}, {"CPU": 2.0}, 0.0, NodeState.DRAINING,
        drain=NodeDrain("outdated", NOW - 40, False, leases=2, actors=1, objects=3),
    )
    done = GcsNode(
        "n-3", "cpu", "fake-3", {"CPU": 4.0}, {"CPU": 4.0}, NOW - 5, NodeState.DRAINING,
        drain=NodeDrain("idle for 300 s", NOW - 12, True),
    )
    alive = GcsNode("n-4", "cpu", "fake-4", {"CPU": 4.0}, {"CPU": 4.0}, NOW - 5, NodeState.ALIVE)
    return compose(GcsView(nodes=(held, done, alive)), [], Plan(), [], [], NOW)


def test_verbose_names_what_holds_each_draining_node() -> None:
    status = draining_example()
    assert [n.drain is not None for n in status.nodes] == [True, True, False]
    text = render(status, verbose=True, now=NOW)
    assert (
        "Draining nodes\n"
        " cpu n-2 for 40s (outdated): held by 2 running tasks, 1 actor, 3 objects with live owners\n"
        " cpu n-3 for 12s (idle for 300 s): drained\n"
    ) in text
    assert "Draining nodes" not in render(status, now=NOW)
    assert ClusterStatus.from_json(status.to_json()) == status


def test_verbose_without_draining_nodes_says_so() -> None:
    assert "Draining nodes\n (no draining nodes)" in render(example(), verbose=True, now=NOW)


def test_a_status_an_older_monitor_wrote_gets_a_one_line_error() -> None:
    old = json.loads(example().to_json())
    old["decisions"] = [{"at": NOW, "action": "launch_failed", "target": "i-1", "node_type": "cpu",
                         "reason": "no capacity"}]
    with pytest.raises(ValueError) as caught:
        ClusterStatus.from_json(json.dumps(old))
    message = str(caught.value)
    assert "\n" not in message
    assert "decisions.0" in message and "written by another rayctl version" in message

"""Drains beside the loop, on virtual time: a drain is asked in the background, so one the GCS
never answers (or never finishes) delays no launch; the drain timeout ends it; a rejected drain
puts the node back in service; idle drains are idle-only, scale-downs for a cap are not."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from autoscaler_scenario import GcsDrainer, Scenario, cluster_config
from polling import wait_for

from autoscaler.config import validate_config
from autoscaler.decisions import DecisionAction
from autoscaler.drain import DrainAnswer
from autoscaler.lifecycle import InstanceStatus
from autoscaler.model import LaunchCause, TerminationCause

S = InstanceStatus
A = DecisionAction


def two_types() -> dict[str, Any]:
    raw = cluster_config()
    raw["available_node_types"]["big"] = {"resources": {"CPU": 4}, "max_workers": 5}
    return raw


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario(two_types(), tmp_path)
    try:
        yield s
    finally:
        s.close()


def two_idle_workers(s: Scenario) -> None:
    s.queue({"CPU": 1}, 2)
    s.settle()
    s.clear_queue()
    s.set_idle(True)
    assert s.statuses() == {"RAYLET_RUNNING": 2}


class SilentGcs:
    """A GCS that never answers a drain request (until the test ends)."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.release = threading.Event()

    def request_drain(
        self, node_id: str, *, reason: str, idle_only: bool, deadline_s: float = 0.0
    ) -> DrainAnswer:
        self.asked.set()
        self.release.wait(30)
        return DrainAnswer(False, "the test ended")


def timed_round(s: Scenario) -> float:
    """One round without waiting for its background work; its wall time in seconds."""
    began = time.monotonic()
    s.monitor.run_once()
    return time.monotonic() - began


def test_an_unanswered_drain_delays_no_launch_and_times_out(scenario: Scenario) -> None:
    s = scenario
    two_idle_workers(s)
    silent = SilentGcs()
    s.drainer = silent
    s.monitor = s.new_monitor()
    try:
        s.clock.advance(61)
        s.queue({"CPU": 4}, 1)  # arrives with the drains: a "big" node, in the same round
        assert timed_round(s) < 2.0
        assert silent.asked.wait(5)
        wait_for(lambda: s.provider.calls_of("launch")[1:], 5, "the big node's launch")
        assert s.provider.calls_of("launch")[1]["node_type"] == "big"
        draining = [r for r in s.records() if r.node_type == "cpu"]
        assert {r.status for r in draining} == {S.RAYLET_DRAINING}  # still unanswered
        s.queue({"CPU": 4}, 2)  # a later round: its launch goes out too, drains still unanswered
        assert timed_round(s) < 2.0
        wait_for(lambda: s.provider.calls_of("launch")[2:], 5, "the second launch")
        assert [d.cause for d in s.decisions(A.LAUNCH)].count(LaunchCause.QUEUED_DEMAND) == 4

        s.clock.advance(601)
        assert timed_round(s) < 2.0  # the drain timeout passed: terminate, answered or not
        ended = [d for d in s.decisions(A.TERMINATE) if d.cause is TerminationCause.DRAIN_TIMEOUT]
        assert len(ended) == 2 and "drain did not finish in 600 s" in ended[0].reason
        assert s.live("cpu") == []
    finally:
        silent.release.set()


class NeverDrained(GcsDrainer):
    """Accepts, but the node's work never ends: the GCS keeps reporting what holds it."""

    def request_drain(self, node_id: str, **kwargs: Any) -> DrainAnswer:
        answer = super().request_drain(node_id, **kwargs)
        for node in self.gcs.rows():
            if node.node_id == node_id and node.drain is not None:
                drain = dataclasses.replace(node.drain, drained=False, leases=2)
                self.gcs.put(dataclasses.replace(node, drain=drain))
        return answer


def test_a_drain_that_never_finishes_ends_at_the_drain_timeout(tmp_path: Path) -> None:
    from autoscaler.lifecycle import Timeouts

    s = Scenario(two_types(), tmp_path, timeouts=Timeouts(drain_s=120))
    try:
        two_idle_workers(s)
        s.drainer = NeverDrained(s.gcs, s.clock)
        s.monitor = s.new_monitor()
        s.clock.advance(61)
        s.round()
        s.clock.advance(119)
        s.round()
        assert s.statuses() == {"RAYLET_DRAINING": 2}
        s.clock.advance(2)
        s.round()
        assert s.statuses() == {"TERMINATING": 2}
        ended = s.decisions(A.TERMINATE)
        assert {d.cause for d in ended} == {TerminationCause.DRAIN_TIMEOUT}
        assert "held by: 2 running tasks" in ended[0].reason
    finally:
        s.close()


class Refusing:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def request_drain(
        self, node_id: str, *, reason: str, idle_only: bool, deadline_s: float = 0.0
    ) -> DrainAnswer:
        self.calls.append((node_id, idle_only))
        return DrainAnswer(False, "work arrived: 1 lease")


def test_a_rejected_drain_returns_the_node_to_service(scenario: Scenario) -> None:
    s = scenario
    two_idle_workers(s)
    refusing = Refusing()
    s.drainer = refusing
    s.monitor = s.new_monitor()
    s.clock.advance(61)
    s.round()
    assert s.statuses() == {"RAYLET_RUNNING": 2}
    for rec in s.records():
        assert [c.status for c in rec.history][-3:] == [
            S.RAYLET_RUNNING, S.RAYLET_DRAINING, S.RAYLET_RUNNING
        ]
        assert rec.history[-1].reason == "the GCS rejected the drain: work arrived: 1 lease"
    s.set_idle(False)  # the work that arrived
    s.round()
    assert len(refusing.calls) == 2 and all(idle_only for _, idle_only in refusing.calls)
    rejected = s.decisions(A.DRAIN_REJECTED)
    assert [d.cause for d in rejected] == [TerminationCause.IDLE] * 2
    assert len(s.live("cpu")) == 2


def test_a_scale_down_for_a_cap_drains_busy_nodes_once_their_work_ends(tmp_path: Path) -> None:
    s = Scenario(two_types(), tmp_path)
    try:
        s.queue({"CPU": 1}, 2)
        s.settle()
        s.clear_queue()
        s.set_idle(False)  # both busy with the two tasks, nothing else waits
        lowered = two_types()
        lowered["available_node_types"]["cpu"]["max_workers"] = 1
        s.config = validate_config(lowered)
        s.monitor = s.new_monitor()
        s.round()
        assert s.drainer.calls == [(s.drainer.calls[0][0], False)]  # not idle-only
        assert s.statuses() == {"RAYLET_RUNNING": 1, "RAYLET_DRAINING": 1}
        s.round()
        assert s.statuses() == {"RAYLET_RUNNING": 1, "RAYLET_DRAINING": 1}  # its work runs on
        draining = next(n for n in s.gcs.rows() if n.drain is not None)
        assert draining.drain is not None
        s.gcs.put(dataclasses.replace(draining, drain=dataclasses.replace(draining.drain,
                                                                          drained=True)))
        s.round()
        s.round()
        assert s.statuses() == {"RAYLET_RUNNING": 1, "TERMINATED": 1}
        assert [d.cause for d in s.decisions(A.DRAIN)] == [TerminationCause.OVER_TYPE_MAX]
    finally:
        s.close()

"""Autoscaler scenarios on virtual time (tests/autoscaler_scenario.py): the fake provider and a
FakeClock drive the real round (observe -> plan -> reconcile) against the in-memory store and a
test-played GCS; the restart scenarios run the real Monitor on a real Redis (compare-and-set in
Lua, records that outlive the process)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from autoscaler_redis import RedisServer, redis_server_fixture  # noqa: F401
from autoscaler_scenario import Scenario, cluster_config
from polling import wait_for

from autoscaler.decisions import DecisionAction, FailureCause
from autoscaler.installer import ConfigNodeInstaller
from autoscaler.lifecycle import InstanceStatus
from autoscaler.model import LaunchCause, ResourceDemand, Shape, TerminationCause
from providers.base import (
    NODE_KIND_HEAD,
    TAG_NODE_KIND,
    CommandResult,
    Instance,
    Offering,
)
from providers.fake import FakeProvider

S = InstanceStatus
A = DecisionAction


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    """make(raw_config=None, **settings) -> an in-memory Scenario, closed after the test."""
    made: list[Scenario] = []

    def build(raw: dict[str, Any] | None = None, **kwargs: Any) -> Scenario:
        made.append(Scenario(raw or cluster_config(), tmp_path, **kwargs))
        return made[-1]

    yield build
    for scenario in made:
        scenario.close()


@pytest.fixture
def scenario(make: Any) -> Scenario:
    return make()


def test_scale_up_for_queued_tasks_then_running(scenario: Scenario) -> None:
    scenario.queue({"CPU": 1}, 3)
    scenario.settle()
    assert scenario.statuses() == {"RAYLET_RUNNING": 3}
    assert len(scenario.live("cpu")) == 3
    (launch,) = scenario.provider.calls_of("launch")  # three nodes of one type: one call
    assert launch["count"] == 3 and not launch["all_or_nothing"]
    commands = [cmd for _, cmd in scenario.provider.commands]
    starts = [c for c in commands if c.startswith("rayctl start")]
    assert starts == ["rayctl start --address=$RAYCTL_HEAD_ADDRESS"] * 3  # one per node
    launches = scenario.decisions(A.LAUNCH)
    assert len(launches) == 3 and all("{CPU: 1}" in d.reason for d in launches)
    assert {d.cause for d in launches} == {LaunchCause.QUEUED_DEMAND}


def test_scale_down_after_idle_timeout(scenario: Scenario) -> None:
    scenario.queue({"CPU": 1}, 2)
    scenario.settle()
    scenario.clear_queue()
    scenario.set_idle(True)
    scenario.clock.advance(59)
    scenario.round()
    assert len(scenario.live("cpu")) == 2  # not yet: idle timeout is 60 s
    scenario.clock.advance(2)
    scenario.round()  # drains asked; the GCS answers at once and reports them drained
    scenario.round()  # drained -> TERMINATING -> terminate
    scenario.round()
    assert scenario.live("cpu") == []
    assert scenario.statuses() == {"TERMINATED": 2}
    drains = scenario.decisions(A.DRAIN)
    assert len(drains) == 2 and all("idle for 61s" in d.reason for d in drains)
    assert {d.cause for d in drains} == {TerminationCause.IDLE}
    assert [idle_only for _, idle_only in scenario.drainer.calls] == [True, True]
    terminated = scenario.decisions(A.TERMINATE)
    assert {d.cause for d in terminated} == {TerminationCause.DRAINED}


def test_min_workers_kept_without_demand(make: Any) -> None:
    raw = cluster_config()
    raw["available_node_types"]["cpu"]["min_workers"] = 2
    s = make(raw)
    s.settle()
    assert s.statuses() == {"RAYLET_RUNNING": 2}
    assert {d.cause for d in s.decisions(A.LAUNCH)} == {LaunchCause.MIN_WORKERS}
    s.set_idle(True)
    s.clock.advance(3600)
    s.settle(2)
    assert s.statuses() == {"RAYLET_RUNNING": 2}  # idle, but never below min_workers


def test_max_workers_caps_launches(make: Any) -> None:
    s = make(cluster_config(max_workers=4))
    s.queue({"CPU": 1}, 50)
    s.settle(6)
    assert len(s.live("cpu")) == 4
    assert [c["count"] for c in s.provider.calls_of("launch")] == [4]


def test_upscaling_speed_limits_pending_nodes(make: Any) -> None:
    s = make(cluster_config(max_workers=20))
    s.queue({"CPU": 1}, 12)
    s.round()
    assert [c["count"] for c in s.provider.calls_of("launch")] == [5]  # Ray's initial allowance
    assert any("upscaling_speed" in n for n in s.monitor.last_plan.notes)
    s.settle(6)
    assert len(s.live("cpu")) == 12


def test_capacity_error_falls_back_to_another_type(make: Any) -> None:
    raw = cluster_config()
    raw["available_node_types"]["big"] = {"resources": {"CPU": 4}, "max_workers": 5}
    s = make(raw)
    s.provider.capacity["cpu"] = 0  # insufficient capacity for every offering of "cpu"
    s.queue({"CPU": 1}, 1)
    s.settle()
    assert [i.node_type for i in s.live()] == ["big"]
    (failed,) = s.decisions(A.ALLOCATION_FAILED)
    assert "no capacity for cpu" in failed.reason and failed.cause is FailureCause.NO_CAPACITY
    marks = s.store.unavailable(s.clock())
    assert [(m.node_type, m.offering) for m in marks] == [("cpu", Offering("cpu"))]


class GatedProvider(FakeProvider):
    """A cloud whose launch call "kills the monitor" (after or before creating the machines)."""

    crash_after_create = True

    def launch(self, *args: Any, **kwargs: Any) -> list[Instance]:
        if self.crash_after_create:
            made = super().launch(*args, **kwargs)
            raise RuntimeError("monitor killed after the cloud call")
        raise RuntimeError("monitor killed before the cloud call")
        return made  # pragma: no cover


@pytest.mark.parametrize("after_create", [True, False], ids=["after-cloud-call", "before"])
def test_restarted_monitor_never_launches_twice(
    redis_server: RedisServer, tmp_path: Path, after_create: bool
) -> None:
    s = Scenario(cluster_config(), tmp_path, redis_server=redis_server)
    try:
        gated = s.new_provider(GatedProvider)
        gated.crash_after_create = after_create
        s.provider = gated
        first = s.new_monitor()
        s.queue({"CPU": 1}, 2)
        s.round(first)  # the launch "crashes": the records stay REQUESTED in Redis
        assert s.statuses() == {"REQUESTED": 2}

        real = s.new_provider()
        real._records, real._counter = gated._records, gated._counter  # the same cloud
        s.provider = real
        s.monitor = s.new_monitor()  # a fresh process: nothing in memory
        s.settle()
        assert s.statuses() == {"RAYLET_RUNNING": 2}
        assert len(s.live("cpu")) == 2
        calls = gated.calls_of("launch") + real.calls_of("launch")
        assert {c["request_id"] for c in calls} == {s.records()[0].request_id}  # resent as is
        assert len(real.calls_of("launch")) == (0 if after_create else 1)  # listed: no resend
        assert real.calls_of("terminate") == []
    finally:
        s.close()


def test_install_failure_releases_the_machine_with_the_output(scenario: Scenario) -> None:
    scenario.provider.command_results["rayctl start"] = CommandResult(
        1, "\n".join(f"line {n}" for n in range(30)) + "\nerror: cannot reach the GCS"
    )
    scenario.queue({"CPU": 1}, 1)
    scenario.round()  # launches and installs (the machine is up at once), which fails
    scenario.round()  # RAYLET_INSTALL_FAILED -> TERMINATING -> terminate
    scenario.round()
    failed = scenario.decisions(A.RAYLET_INSTALL_FAILED)
    assert "error: cannot reach the GCS" in failed[-1].reason
    assert "line 5\n" not in failed[-1].reason  # only the tail
    assert failed[-1].cause is FailureCause.INSTALL_COMMAND_FAILED
    first = next(r for r in scenario.records() if r.cloud_instance_id == "fake-1")
    assert first.status == S.TERMINATED
    assert [c.status for c in first.history][-3:] == [
        S.RAYLET_INSTALL_FAILED, S.TERMINATING, S.TERMINATED
    ]
    assert first.cloud_instance_id not in {i.id for i in scenario.live()}
    released = [d for d in scenario.decisions(A.TERMINATE) if d.target == first.instance_id]
    assert [d.cause for d in released] == [TerminationCause.INSTALL_FAILED]


def test_leaked_instance_terminated_after_grace_but_never_the_head(make: Any) -> None:
    s = make(leak_grace_s=120)
    head = s.provider.launch(
        "head", Offering("head"), 1, "head-req", tags={TAG_NODE_KIND: NODE_KIND_HEAD}
    )[0]
    leak = s.provider.launch("cpu", Offering("cpu"), 1, "someone-elses-request")[0]
    s.round()
    s.clock.advance(100)
    s.round()
    assert {i.id for i in s.live()} == {head.id, leak.id}  # within the grace period
    s.clock.advance(30)
    s.round()
    assert {i.id for i in s.live()} == {head.id}
    assert [(d.target, d.cause) for d in s.decisions(A.TERMINATE)] == [
        (leak.id, TerminationCause.LEAKED)
    ]


def test_launch_timeout_marks_launch_failed(make: Any) -> None:
    s = make()
    s.provider.fail_next("launch", RuntimeError("the process died mid-call"))
    s.queue({"CPU": 1}, 1)
    s.round()
    # nothing in flight, nothing listed: a monitor restart would resend; give it the timeout
    s.monitor.executor.shutdown()
    s.monitor = s.new_monitor()
    s.provider.fail_next("launch", RuntimeError("still failing"))
    s.clock.advance(601)
    s.round()
    statuses = [c.status for r in s.records() for c in r.history]
    assert S.ALLOCATION_FAILED in statuses
    (failed,) = s.decisions(A.ALLOCATION_FAILED)
    assert failed.cause is FailureCause.ALLOCATION_TIMEOUT


def test_config_installer_sets_the_node_environment(tmp_path: Any) -> None:
    from autoscaler.config import validate_config
    from providers.local import LocalProvider

    env_names = ["HEAD_ADDRESS", "TOKEN_FILE", "NODE_TYPE", "INSTANCE_ID", "NODE_RESOURCES"]
    dump = " ".join(f'"${{RAYCTL_{name}}}"' for name in env_names)

    def config(start: str) -> Any:
        return validate_config({
            "cluster_name": "envtest",
            "provider": {"type": "local", "state_dir": str(tmp_path)},
            "available_node_types": {"head": {"resources": {}}, "cpu": {"resources": {"CPU": 1}}},
            "head_node_type": "head",
            "worker_start_ray_commands": [start],
        })

    provider = LocalProvider("envtest", {"state_dir": str(tmp_path)}, {"cpu": {}})
    instance = provider.launch("cpu", Offering("local"), 1, "r1")[0]
    ok = ConfigNodeInstaller(
        provider, config(f"printf '%s\\n' {dump} > env.txt"), "127.0.0.1:6379", "",
        str(tmp_path / "logs"), {"cpu": {"CPU": 1.0}},
    ).install(instance)
    assert ok.ok, ok.detail
    written = (provider.slot_dir(instance.id) / "env.txt").read_text().splitlines()
    assert written == ["127.0.0.1:6379", "", "cpu", instance.id, '{"CPU": 1.0}']
    bad = ConfigNodeInstaller(
        provider, config("echo one; echo two >&2; exit 3"), "h:1", "", str(tmp_path / "logs"),
    ).install(instance)
    assert not bad.ok
    assert bad.detail == "start: `echo one; echo two >&2; exit 3` exited with 3:\none\ntwo"
    provider.terminate([instance.id])


class SlowCloud(FakeProvider):
    """Each launch waits for `release`; `active` counts launches inside the call right now."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.active = 0
        self.most_active = 0
        self.guard = threading.Lock()

    def launch(self, *args: Any, **kwargs: Any) -> list[Instance]:
        with self.guard:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            assert self.release.wait(10), "never released"
            return super().launch(*args, **kwargs)
        finally:
            with self.guard:
                self.active -= 1


def test_launches_run_concurrently_up_to_the_limit(make: Any) -> None:
    """Five types with demand: five batches, at most three in the cloud at once."""
    raw = cluster_config()
    for n in range(5):
        raw["available_node_types"][f"t{n}"] = {"resources": {"CPU": 1, f"r{n}": 1},
                                                "max_workers": 2}
    s = make(raw)
    slow = s.new_provider(SlowCloud)
    s.provider = slow
    s.monitor = s.new_monitor(max_concurrent_launches=3)
    assert s.memory is not None
    s.memory.demands = [ResourceDemand(Shape.of({f"r{n}": 1}), 1) for n in range(5)]
    s.monitor.run_once()  # returns at once: the launches wait in the pool
    wait_for(lambda: slow.active == 3, 5, "three launches in flight")
    assert s.statuses() == {"REQUESTED": 5}
    slow.release.set()
    s.monitor.executor.wait_idle()
    assert slow.most_active == 3
    assert len(slow.calls_of("launch")) == 5
    assert s.statuses() == {"RAYLET_INSTALLING": 5}  # running machines go straight to install


@pytest.mark.parametrize("registers", [True, False], ids=["raylet-registers", "never"])
def test_install_in_flight_when_the_monitor_restarts(
    redis_server: RedisServer, tmp_path: Path, registers: bool
) -> None:
    s = Scenario(cluster_config(), tmp_path, redis_server=redis_server, orphan_install_grace_s=60)
    try:
        s.queue({"CPU": 1}, 1)
        s.round()  # the start commands ran; the raylet has not registered yet
        assert s.statuses() == {"RAYLET_INSTALLING": 1}
        s.monitor.executor.shutdown()
        s.monitor = s.new_monitor()  # restarted: it did not start that install
        s.clock.advance(30)
        s.round()
        assert s.statuses() == {"RAYLET_INSTALLING": 1}  # within the grace: maybe still coming up
        if registers:
            s.boot_raylets()
            s.round()
            assert s.statuses() == {"RAYLET_RUNNING": 1}
            return
        s.clock.advance(31)
        s.round()
        first = next(r for r in s.records() if r.cloud_instance_id == "fake-1")
        assert [c.status for c in first.history][-2:] == [
            S.RAYLET_INSTALLING, S.RAYLET_INSTALL_FAILED
        ]
        assert "died with the previous monitor" in first.history[-1].reason
        s.settle()
        assert s.statuses() == {"TERMINATED": 1, "RAYLET_RUNNING": 1}  # replaced
    finally:
        s.close()


class StuckInstallCloud(FakeProvider):
    """The first node's install hangs (until `release`) before its first command: a monitor
    killed then leaves it RAYLET_INSTALLING with nobody running it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.entered = threading.Event()

    def command_runner(self, instance: Instance) -> Any:
        if instance.id == "fake-1":
            self.entered.set()
            assert self.release.wait(10), "never released"
        return super().command_runner(instance)


def test_an_install_that_died_with_the_monitor_is_replaced_at_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    s = Scenario(cluster_config(), tmp_path, redis_server=redis_server,
                 provider_class=StuckInstallCloud)
    stuck = cast(StuckInstallCloud, s.provider)
    try:
        s.queue({"CPU": 1}, 1)
        s.monitor.run_once()
        wait_for(stuck.entered.is_set, 5, "the install started")
        dead = s.monitor  # as if killed -9 here: its install never returns
        s.monitor = s.new_monitor()
        s.round()  # no time passes: no grace, no timeout
        first = next(r for r in s.records() if r.cloud_instance_id == "fake-1")
        failed = [c for c in first.history if c.status is S.RAYLET_INSTALL_FAILED]
        assert failed and "before its start commands returned" in failed[0].reason
        stuck.release.set()
        dead.executor.shutdown()
        s.settle()
        assert s.statuses() == {"TERMINATED": 1, "RAYLET_RUNNING": 1}  # replaced
    finally:
        stuck.release.set()
        s.close()


def test_transient_error_rests_the_offering_then_retries(make: Any) -> None:
    from providers.base import TransientError

    s = make(transient_backoff_s=30)
    s.provider.fail_next("launch", TransientError("rate exceeded"))
    s.queue({"CPU": 1}, 1)
    s.round()
    s.round()  # ALLOCATION_FAILED -> TERMINATED; "cpu" has no other offering: held back
    assert len(s.provider.calls_of("launch")) == 1
    assert s.live() == []
    assert [d.cause for d in s.decisions(A.ALLOCATION_FAILED)] == [FailureCause.PROVIDER_ERROR]
    s.clock.advance(31)
    s.settle()
    assert s.statuses() == {"TERMINATED": 1, "RAYLET_RUNNING": 1}

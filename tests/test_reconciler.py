"""Autoscaler scenarios on virtual time: the fake provider and a FakeClock drive the real
monitor round (observe -> plan -> reconcile) against a real Redis; "raylets" are rows the test
writes into the GCS tables, exactly as the GCS would."""

from __future__ import annotations

import json
import threading
from typing import Any, cast

import pytest
from autoscaler_redis import RedisServer, new_cluster_id, redis_server_fixture  # noqa: F401
from polling import wait_for

from autoscaler.config import validate_config
from autoscaler.executor import StartCommandUpdater
from autoscaler.lifecycle import InstanceRecord, InstanceStatus
from autoscaler.monitor import Monitor, MonitorOptions
from autoscaler.reconciler import Settings
from providers.base import (
    NODE_KIND_HEAD,
    TAG_NODE_KIND,
    CommandResult,
    Instance,
    NodeProvider,
    Offering,
)
from providers.fake import FakeClock, FakeProvider
from runtime.protocol import common_pb2

S = InstanceStatus


def cloud(provider: object) -> NodeProvider:
    """The concrete providers satisfy NodeProvider; mypy cannot see it while the protocol
    declares `config_model` as a mutable attribute (see the report)."""
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


class Scenario:
    """One cluster: a monitor on a FakeClock, the fake cloud, and a hand-driven GCS."""

    def __init__(self, server: RedisServer, raw_config: dict[str, Any], **settings: Any) -> None:
        self.clock = FakeClock()
        self.config = validate_config(raw_config)
        self.provider = FakeProvider(
            self.config.cluster_name,
            self.config.provider,
            self.config.node_types_for_provider(),
            clock=self.clock,
        )
        self.redis = server.client()
        self.cluster_id = new_cluster_id()
        self.prefix = f"rayctl:{self.cluster_id}:"
        self.settings = Settings(**settings)
        self.monitor = self.new_monitor()

    def new_monitor(self, **options: Any) -> Monitor:
        opts = MonitorOptions(self.cluster_id, settings=self.settings, **options)
        return Monitor(self.config, cloud(self.provider), self.redis, opts, clock=self.clock)

    def round(self, monitor: Monitor | None = None) -> None:
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
        known = {n.instance_id for n in self.nodes()}
        for instance in self.provider.list_instances():
            if instance.id in installed and instance.id not in known:
                total = self.config.node_type(instance.node_type).resources or {}
                self.put_node(f"node-{instance.id}", instance, dict(total), idle=True)

    def put_node(
        self, node_id: str, instance: Instance, total: dict[str, float], *, idle: bool
    ) -> None:
        info = common_pb2.NodeInfo(
            node_id=node_id,
            state="ALIVE",
            instance_id=instance.id,
            node_type=instance.node_type,
            idle_since=self.clock() if idle else 0.0,
        )
        info.total.update(total)
        info.available.update(total)
        self.redis.hset(self.prefix + "nodes", node_id, info.SerializeToString())

    def nodes(self) -> list[Any]:
        out = []
        for raw in self.redis.hgetall(self.prefix + "nodes").values():
            info = common_pb2.NodeInfo()
            info.ParseFromString(raw)
            out.append(info)
        return out

    def set_idle(self, idle: bool) -> None:
        for info in self.nodes():
            info.idle_since = self.clock() if idle else 0.0
            self.redis.hset(self.prefix + "nodes", info.node_id, info.SerializeToString())

    def queue(self, shape: dict[str, float], count: int) -> None:
        load = [{"shape": shape, "count": count, "infeasible": False, "kind": "task"}]
        self.redis.hset(self.prefix + "load", "head-node", json.dumps(load))

    def clear_queue(self) -> None:
        self.redis.hdel(self.prefix + "load", "head-node")

    # --- what happened -----------------------------------------------------------------------

    def records(self) -> list[InstanceRecord]:
        return self.monitor.store.all()

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.records():
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
        return counts

    def live(self, node_type: str | None = None) -> list[Instance]:
        return [i for i in self.provider.list_instances() if node_type in (None, i.node_type)]

    def decisions(self) -> list[dict[str, Any]]:
        return self.monitor.store.decisions(limit=200)


@pytest.fixture
def scenario(redis_server: RedisServer) -> Scenario:
    return Scenario(redis_server, cluster_config())


def test_scale_up_for_queued_tasks_then_running(scenario: Scenario) -> None:
    scenario.queue({"CPU": 1}, 3)
    scenario.settle()
    assert scenario.statuses() == {"RUNNING": 3}
    assert len(scenario.live("cpu")) == 3
    assert len(scenario.provider.calls_of("launch")) == 3
    commands = [cmd for _, cmd in scenario.provider.commands]
    starts = [c for c in commands if c.startswith("rayctl start")]
    assert starts == ["rayctl start --address=$RAYCTL_HEAD_ADDRESS"] * 3  # one per node, by the updater
    launch = [d for d in scenario.decisions() if d["action"] == "launch"]
    assert len(launch) == 3 and all("{CPU: 1}" in d["reason"] for d in launch)


def test_scale_down_after_idle_timeout(scenario: Scenario) -> None:
    scenario.queue({"CPU": 1}, 2)
    scenario.settle()
    scenario.clear_queue()
    scenario.set_idle(True)
    scenario.clock.advance(59)
    scenario.round()
    assert len(scenario.live("cpu")) == 2  # not yet: idle timeout is 60 s
    scenario.clock.advance(2)
    scenario.round()
    scenario.round()
    assert scenario.live("cpu") == []
    assert scenario.statuses() == {"TERMINATED": 2}
    drains = [d for d in scenario.decisions() if d["action"] == "drain"]
    assert len(drains) == 2 and all("idle for 61s" in d["reason"] for d in drains)


def test_min_workers_kept_without_demand(redis_server: RedisServer) -> None:
    raw = cluster_config()
    raw["available_node_types"]["cpu"]["min_workers"] = 2
    s = Scenario(redis_server, raw)
    s.settle()
    assert s.statuses() == {"RUNNING": 2}
    s.set_idle(True)
    s.clock.advance(3600)
    s.settle(2)
    assert s.statuses() == {"RUNNING": 2}  # idle, but never below min_workers


def test_max_workers_caps_launches(redis_server: RedisServer) -> None:
    raw = cluster_config(max_workers=4)
    s = Scenario(redis_server, raw)
    s.queue({"CPU": 1}, 50)
    s.settle(6)
    assert len(s.live("cpu")) == 4
    assert len(s.provider.calls_of("launch")) == 4


def test_upscaling_speed_limits_pending_nodes(redis_server: RedisServer) -> None:
    s = Scenario(redis_server, cluster_config(max_workers=20))
    s.queue({"CPU": 1}, 12)
    s.round()
    assert len(s.provider.calls_of("launch")) == 5  # Ray's initial allowance
    assert any("upscaling_speed" in n for n in s.monitor.last_plan.notes)
    s.settle(6)
    assert len(s.live("cpu")) == 12


def test_capacity_error_falls_back_to_another_type(redis_server: RedisServer) -> None:
    raw = cluster_config()
    raw["available_node_types"]["big"] = {"resources": {"CPU": 4}, "max_workers": 5}
    s = Scenario(redis_server, raw)
    s.provider.capacity["cpu"] = 0  # insufficient capacity for every offering of "cpu"
    s.queue({"CPU": 1}, 1)
    s.settle()
    assert [i.node_type for i in s.live()] == ["big"]
    failed = [d for d in s.decisions() if d["action"] == "launch_failed"]
    assert failed and "no capacity for cpu" in failed[0]["reason"]
    marks = s.monitor.store.unavailable(s.clock())
    assert [(m.key, m.node_type) for m in marks] == [("cpu/-/on-demand", "cpu")]


class GatedProvider(FakeProvider):
    """A cloud whose launch call hangs (after or before creating the machine) until released,
    so a test can "kill" the monitor in the middle of it."""

    crash_after_create = True

    def launch(self, *args: Any, **kwargs: Any) -> list[Instance]:
        if self.crash_after_create:
            made = super().launch(*args, **kwargs)
            raise RuntimeError("monitor killed after the cloud call")
        raise RuntimeError("monitor killed before the cloud call")
        return made  # pragma: no cover


@pytest.mark.parametrize("after_create", [True, False], ids=["after-cloud-call", "before"])
def test_restarted_monitor_never_launches_twice(
    redis_server: RedisServer, after_create: bool
) -> None:
    s = Scenario(redis_server, cluster_config())
    gated = GatedProvider(
        s.config.cluster_name, s.config.provider, s.config.node_types_for_provider(), clock=s.clock
    )
    gated.crash_after_create = after_create
    s.provider = gated
    first = s.new_monitor()
    s.queue({"CPU": 1}, 2)
    s.round(first)  # the launch "crashes": the record stays REQUESTED in Redis
    assert s.statuses() == {"REQUESTED": 2}
    first.executor.shutdown()

    real = FakeProvider(
        s.config.cluster_name, s.config.provider, s.config.node_types_for_provider(), clock=s.clock
    )
    real._records, real._counter = gated._records, gated._counter  # the same cloud
    s.provider = real
    s.monitor = s.new_monitor()  # a fresh process: nothing in memory
    s.settle()
    assert s.statuses() == {"RUNNING": 2}
    assert len(s.live("cpu")) == 2
    request_ids = {c["request_id"] for c in gated.calls_of("launch") + real.calls_of("launch")}
    assert len(request_ids) == 2  # a resend reuses the request id; no third machine


def test_install_failure_releases_the_machine_with_the_output(scenario: Scenario) -> None:
    scenario.provider.command_results["rayctl start"] = CommandResult(
        1, "\n".join(f"line {n}" for n in range(30)) + "\nerror: cannot reach the GCS"
    )
    scenario.queue({"CPU": 1}, 1)
    scenario.round()
    scenario.round()  # installs, fails
    scenario.round()  # INSTALL_FAILED -> TERMINATING -> terminate
    scenario.round()
    failed = [d for d in scenario.decisions() if d["action"] == "install_failed"]
    assert "error: cannot reach the GCS" in failed[0]["reason"]
    assert "line 5\n" not in failed[0]["reason"]  # only the tail
    first = next(r for r in scenario.records() if r.cloud_instance_id == "fake-1")
    assert first.status == S.TERMINATED
    assert [c.status for c in first.history][-3:] == [S.INSTALL_FAILED, S.TERMINATING, S.TERMINATED]
    assert first.cloud_instance_id not in {i.id for i in scenario.live()}


def test_leaked_instance_terminated_after_grace_but_never_the_head(
    redis_server: RedisServer,
) -> None:
    s = Scenario(redis_server, cluster_config(), leak_grace_s=120)
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
    assert any(
        d["action"] == "terminate" and d["target"] == leak.id and "leaked" in d["reason"]
        for d in s.decisions()
    )


def test_launch_timeout_marks_launch_failed(redis_server: RedisServer) -> None:
    s = Scenario(redis_server, cluster_config())
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
    assert S.LAUNCH_FAILED in statuses


def test_start_command_updater_sets_the_node_environment(tmp_path: Any) -> None:
    from providers.local import LocalProvider

    provider = LocalProvider("envtest", {"state_dir": str(tmp_path)}, {"cpu": {}})
    instance = provider.launch("cpu", Offering("local"), 1, "r1")[0]
    env_names = ["HEAD_ADDRESS", "TOKEN_FILE", "NODE_TYPE", "INSTANCE_ID", "NODE_RESOURCES"]
    dump = " ".join(f'"${{RAYCTL_{name}}}"' for name in env_names)
    ok = StartCommandUpdater(
        cloud(provider),
        [f"printf '%s\\n' {dump} > env.txt"],
        "127.0.0.1:6379",
        "/tmp/token",
        {"cpu": {"CPU": 1.0}},
    ).update(instance)
    assert ok.ok
    written = (provider.slot_dir(instance.id) / "env.txt").read_text().splitlines()
    assert written == ["127.0.0.1:6379", "/tmp/token", "cpu", instance.id, '{"CPU": 1.0}']
    bad = StartCommandUpdater(
        cloud(provider), ["echo one; echo two >&2; exit 3"], "h:1", "t"
    ).update(instance)
    assert not bad.ok and bad.detail == "`echo one; echo two >&2; exit 3` exited with 3:\none\ntwo"
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


def test_launches_run_concurrently_up_to_the_limit(redis_server: RedisServer) -> None:
    s = Scenario(redis_server, cluster_config())
    slow = SlowCloud(
        s.config.cluster_name, s.config.provider, s.config.node_types_for_provider(), clock=s.clock
    )
    s.provider = slow
    s.monitor = s.new_monitor(max_concurrent_launches=3)
    s.queue({"CPU": 1}, 5)
    s.monitor.run_once()  # returns at once: the launches wait in the pool
    wait_for(lambda: slow.active == 3, 5, "three launches in flight")
    assert s.statuses() == {"REQUESTED": 5}
    slow.release.set()
    s.monitor.executor.wait_idle()
    assert slow.most_active == 3
    assert s.statuses() == {"INSTALLING": 5}  # running machines go straight on to install


@pytest.mark.parametrize("registers", [True, False], ids=["raylet-registers", "never"])
def test_install_in_flight_when_the_monitor_restarts(
    redis_server: RedisServer, registers: bool
) -> None:
    s = Scenario(redis_server, cluster_config(), orphan_install_grace_s=60)
    s.queue({"CPU": 1}, 1)
    s.round()
    s.round()  # the start commands ran; the raylet has not registered yet
    assert s.statuses() == {"INSTALLING": 1}
    s.monitor.executor.shutdown()
    s.monitor = s.new_monitor()  # restarted: it did not start that install
    s.clock.advance(30)
    s.round()
    assert s.statuses() == {"INSTALLING": 1}  # within the grace: maybe still coming up
    if registers:
        s.boot_raylets()
        s.round()
        assert s.statuses() == {"RUNNING": 1}
        return
    s.clock.advance(31)
    s.round()
    first = next(r for r in s.records() if r.cloud_instance_id == "fake-1")
    assert [c.status for c in first.history][-2:] == [S.INSTALLING, S.INSTALL_FAILED]
    assert "died with the previous monitor" in first.history[-1].reason
    s.settle()
    assert s.statuses() == {"TERMINATED": 1, "RUNNING": 1}  # replaced


def test_transient_error_rests_the_offering_then_retries(redis_server: RedisServer) -> None:
    from providers.base import TransientError

    s = Scenario(redis_server, cluster_config(), transient_backoff_s=30)
    s.provider.fail_next("launch", TransientError("rate exceeded"))
    s.queue({"CPU": 1}, 1)
    s.round()
    s.round()  # LAUNCH_FAILED -> TERMINATED; "cpu" has no other offering: held back
    assert len(s.provider.calls_of("launch")) == 1
    assert s.live() == []
    s.clock.advance(31)
    s.settle()
    assert s.statuses() == {"TERMINATED": 1, "RUNNING": 1}

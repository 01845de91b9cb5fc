"""The monitor as a running loop: a demand-change notice wakes it within 200 ms (the tick is
set far longer, so only the notice can explain it); request_resources() through a real GCS
reaches it and launches; `rayctl status` reads what it wrote."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
import redis
from autoscaler_redis import RedisServer, new_cluster_id, redis_server_fixture  # noqa: F401
from polling import wait_for
from typer.testing import CliRunner

from autoscaler import sdk
from autoscaler.cli import app
from autoscaler.config import validate_config
from autoscaler.lifecycle import InstanceStatus
from autoscaler.monitor import Monitor, MonitorOptions, gcs_nodes, options_from_args, parse_args
from providers.base import NodeProvider
from providers.fake import FakeProvider
from runtime.gcs.schema import GcsKeys, KvKey, KvNamespace

LONG_TICK_S = 30.0
CONFIG = {
    "cluster_name": "monitor-test",
    "max_workers": 4,
    "provider": {"type": "fake"},
    "head_node_type": "head",
    "available_node_types": {
        "head": {"resources": {"CPU": 0}},
        "cpu": {"resources": {"CPU": 1}, "max_workers": 4},
        "gpu": {"resources": {"CPU": 8, "GPU": 1}, "max_workers": 0},
    },
}


class Running:
    """A monitor on its own thread, stopped (and its thread joined) by `stop()`."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=monitor.run_forever, args=(self.stop_event,))
        self.thread.start()
        wait_for(lambda: monitor.rounds >= 1, 10, "the first round")

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "monitor thread did not stop"


def start_monitor(
    client: redis.Redis, cluster_id: str, **options: Any
) -> tuple[Running, FakeProvider]:
    config = validate_config(CONFIG)
    provider = FakeProvider(config.cluster_name, config.provider, config.node_types_for_provider())
    nodes = options.pop("nodes", None)
    monitor = Monitor(
        config,
        cast(NodeProvider, provider),  # mypy: see tests/test_reconciler.py `cloud`
        client,
        MonitorOptions(cluster_id, **{"tick_s": LONG_TICK_S, **options}),
        nodes=nodes,
    )
    return Running(monitor), provider


def test_demand_notice_wakes_the_monitor_within_200ms(redis_server: RedisServer) -> None:
    client, cluster_id = redis_server.client(), new_cluster_id()
    running, provider = start_monitor(client, cluster_id)
    try:
        keys = GcsKeys(cluster_id)
        delays = []
        for count in (1, 2, 3):
            wait_for(lambda: running.monitor.woke.is_set(), 5, "round start")
            running.monitor.woke.clear()
            load = [{"shape": {"CPU": 1}, "count": count, "infeasible": False, "kind": "task"}]
            client.hset(keys.load, "node-a", json.dumps(load))
            sent = time.monotonic()
            client.publish(keys.demand_changed, str(time.time()))
            assert running.monitor.woke.wait(2), "the notice did not wake the monitor"
            delays.append(running.monitor.last_wake - sent)
            wait_for(lambda: len(provider.calls_of("launch")) >= count, 5, "launches")  # noqa: B023
        assert max(delays) < 0.2, f"wake-up delays {delays}"
        assert len(provider.calls_of("launch")) == 3
    finally:
        running.stop()


def test_the_drain_timeout_is_a_monitor_flag(capsys: pytest.CaptureFixture[str]) -> None:
    required = ["--config", "c.yaml", "--gcs-address", "h:1", "--token-file", "t",
                "--redis-address", "h:2", "--cluster-id", "abc"]
    assert options_from_args(parse_args(required)).settings.timeouts.drain_s == 600.0
    options = options_from_args(parse_args([*required, "--drain-timeout-s", "45"]))
    assert options.settings.timeouts.drain_s == 45.0
    with pytest.raises(SystemExit):
        parse_args([*required, "--drain-timeout-s", "0"])
    assert "--drain-timeout-s must be a number of seconds > 0, got 0" in capsys.readouterr().err


def test_launchable_node_types_published(redis_server: RedisServer) -> None:
    client, cluster_id = redis_server.client(), new_cluster_id()
    running, _ = start_monitor(client, cluster_id)
    running.stop()
    raw = client.hget(GcsKeys(cluster_id).kv(KvNamespace.AUTOSCALER), KvKey.LAUNCHABLE_NODE_TYPES)
    assert isinstance(raw, bytes)
    assert json.loads(raw) == {"cpu": {"CPU": 1.0}}  # not the head (max 0), not gpu (max 0)


# --- with a real GCS -------------------------------------------------------------------------


def gcs_redis_port(handle: Any) -> int:
    """start_head() does not expose its Redis port; the GCS's command line has it."""
    for proc in handle.procs:
        args = [str(a) for a in proc.args]
        if "runtime.gcs.server" in args:
            return int(args[args.index("--redis-port") + 1])
    raise AssertionError("no GCS process in the head's handle")


@dataclass
class Head:
    gcs_address: str
    token: str
    token_file: str
    cluster_id: str
    redis: redis.Redis


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    from runtime.auth import read_token_file
    from runtime.node import start_head
    from runtime.session import all_sessions, stop_session

    temp_dir = tempfile.mkdtemp(prefix="rayctl-monitor-test-")
    try:
        handle = start_head(num_cpus=0, temp_dir=temp_dir, object_store_memory=64 * 1024**2)
        redis_port = gcs_redis_port(handle)
        token = read_token_file(handle.token_file)
        client = redis.Redis(host="127.0.0.1", port=redis_port, password=token)
        yield Head(handle.gcs_address, token, handle.token_file, handle.cluster_id, client)
    finally:
        for session in all_sessions(temp_dir):
            stop_session(session, grace_s=2)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_request_resources_round_trip_through_the_gcs(head: Head) -> None:
    running, provider = start_monitor(
        head.redis,
        head.cluster_id,
        nodes=gcs_nodes(head.gcs_address, head.token),
        gcs_address=head.gcs_address,
        token_file=head.token_file,
    )
    try:
        sent = time.monotonic()
        sdk.request_resources(num_cpus=2, address=head.gcs_address, token=head.token)
        wait_for(lambda: _launched(provider) == 2, 5, "two nodes launched (one call)")
        assert time.monotonic() - sent < 1.0  # woken by the KV write, not the 30 s tick
        status = wait_for(
            lambda: _status_with_pending(head, 2), 5, "status showing two pending nodes"
        )
        assert {p.node_type for p in status.pending} == {"cpu"}
        assert any(d.kind == "request_resources" and d.count == 2 for d in status.demand)

        sdk.request_resources(num_cpus=0, address=head.gcs_address, token=head.token)
        raw = head.redis.hget(GcsKeys(head.cluster_id).kv(KvNamespace.AUTOSCALER),
                             KvKey.RESOURCE_REQUESTS)
        assert isinstance(raw, bytes) and json.loads(raw) == []
    finally:
        running.stop()


def _launched(provider: FakeProvider) -> int:
    return sum(call["count"] for call in provider.calls_of("launch"))


def _status_with_pending(head: Head, count: int) -> Any:
    status = sdk.get_status(address=head.gcs_address, token=head.token)
    return status if len(status.pending) == count else None


def test_rayctl_status_command(head: Head) -> None:
    running, _ = start_monitor(
        head.redis,
        head.cluster_id,
        nodes=gcs_nodes(head.gcs_address, head.token),
    )
    try:
        status_key = GcsKeys(head.cluster_id).kv(KvNamespace.AUTOSCALER_STATUS)
        wait_for(lambda: head.redis.hget(status_key, "status"), 10, "the monitor's first status")
        env = {"RAYCTL_TOKEN_FILE": head.token_file}
        runner = CliRunner()
        text = runner.invoke(app, ["status", "--address", head.gcs_address], env=env)
        assert text.exit_code == 0, text.output
        assert "Node status" in text.output and "Recent decisions" in text.output
        as_json = runner.invoke(app, ["status", "--address", head.gcs_address, "--json"], env=env)
        assert as_json.exit_code == 0, as_json.output
        assert as_json.stdout.lstrip().startswith("{"), as_json.stdout[:500]
        data = json.loads(as_json.stdout)
        assert any(n["is_head"] for n in data["nodes"])
    finally:
        running.stop()


def test_rayctl_status_names_the_problem_without_a_cluster(tmp_path: Any) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("secret")
    env = {"RAYCTL_TOKEN_FILE": str(token_file)}
    result = CliRunner().invoke(app, ["status", "--address", "127.0.0.1:1"], env=env)
    assert result.exit_code == 1
    assert "cannot reach the cluster at 127.0.0.1:1" in result.output


# --- end to end: the monitor process, the local provider, real raylets ----------------------


def test_local_cluster_scales_up_for_tasks_and_back_to_zero(tmp_path: Any) -> None:
    """Head with 0 CPUs, worker type {CPU: 1} max 3, idle timeout 2 s: six one-CPU tasks launch
    three real nodes, all finish, and the nodes are drained and gone after the idle timeout."""
    import subprocess
    import sys

    import yaml

    import runtime as rt
    from autoscaler.lifecycle_store import RedisLifecycleStore
    from providers.local import LocalProvider
    from runtime.auth import read_token_file
    from runtime.node import start_head
    from runtime.session import all_sessions, stop_session

    temp_dir = str(tmp_path / "head")
    state_dir = str(tmp_path / "slots")
    start = f"{sys.executable} -m autoscaler.cli start --address=$RAYCTL_HEAD_ADDRESS --num-cpus=1"
    section: dict[str, Any] = {"type": "local", "state_dir": state_dir, "terminate_grace_s": 1}
    raw = {
        "cluster_name": "e2e",
        "max_workers": 3,
        "provider": section,
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 0}},
            "cpu": {"resources": {"CPU": 1}, "max_workers": 3, "idle_timeout_s": 2},
        },
        "worker_start_ray_commands": [start],
    }
    config_file = tmp_path / "cluster.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    provider = LocalProvider("e2e", section, {"head": {}, "cpu": {}})
    monitor: subprocess.Popen[bytes] | None = None
    try:
        handle = start_head(num_cpus=0, temp_dir=temp_dir, object_store_memory=64 * 1024**2)
        redis_address = f"127.0.0.1:{gcs_redis_port(handle)}"
        with open(tmp_path / "monitor.log", "wb") as log:
            monitor = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "autoscaler.monitor",
                    "--config",
                    str(config_file),
                    "--gcs-address",
                    handle.gcs_address,
                    "--token-file",
                    handle.token_file,
                    "--redis-address",
                    redis_address,
                    "--cluster-id",
                    handle.cluster_id,
                    "--tick-s",
                    "0.5",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        token = read_token_file(handle.token_file)
        rt.init(address=handle.gcs_address, _token=token)

        @rt.remote(num_cpus=1)
        def work() -> str:
            time.sleep(0.5)
            return str(rt.get_runtime_context().get_node_id())

        ran_on = set(rt.get([work.remote() for _ in range(6)], timeout=90))
        assert handle.node_id not in ran_on
        host, _, port = redis_address.rpartition(":")
        store = RedisLifecycleStore(
            redis.Redis(host=host, port=int(port), password=token), handle.cluster_id
        )
        launched = store.all()
        assert len(launched) == 3, [r.status for r in launched]  # max_workers, never more
        wait_for(lambda: provider.list_instances() == [], 30, "workers drained after idle")
        wait_for(lambda: all(r.status is InstanceStatus.TERMINATED for r in store.all()), 10,
                 "records")
        for record in store.all():
            path = [c.status.value for c in record.history]
            assert path == [
                "QUEUED",
                "REQUESTED",
                "ALLOCATED",
                "RAYLET_INSTALLING",
                "RAYLET_RUNNING",
                "RAYLET_DRAINING",
                "TERMINATING",
                "TERMINATED",
            ], path
            assert "idle for" in record.history[5].reason

        # a standing request: two nodes with no task, kept while requested, released after
        sdk.request_resources(num_cpus=2)  # through the connected driver
        wait_for(lambda: _running(store) == 2, 30, "two requested nodes running")
        wait_for(lambda: _workers_idle_longer_than(sdk.get_status(), 3.0, 2), 15, "idle > 3 s")
        assert len(provider.list_instances()) == 2  # idle past the timeout, but still requested
        sdk.request_resources(num_cpus=0)
        wait_for(lambda: provider.list_instances() == [], 30, "request cleared, nodes drained")

        # a shape no node type can hold: reported, never launched for
        @rt.remote(num_gpus=8)
        def gpu_job() -> None:
            return None

        gpu_job.remote()
        status = wait_for(lambda: _infeasible(sdk.get_status()), 10, "infeasible in status")
        assert status.infeasible[0].shape == {"CPU": 1.0, "GPU": 8.0}
        assert provider.list_instances() == []

        # a STRICT_SPREAD group of 3 one-CPU bundles: three new nodes, one bundle each
        from runtime.util import placement_group, placement_group_table, remove_placement_group

        group = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
        assert group.wait(60), (tmp_path / "monitor.log").read_text()[-3000:]
        spread_over = set(placement_group_table(group)["bundles_to_node_id"].values())
        assert len(spread_over) == 3 and handle.node_id not in spread_over
        remove_placement_group(group)
        wait_for(lambda: provider.list_instances() == [], 30, "nodes drained after the group went")
        assert monitor.poll() is None, (tmp_path / "monitor.log").read_text()
    finally:
        if rt.is_initialized():
            rt.shutdown()
        if monitor is not None:
            monitor.terminate()
            monitor.wait(timeout=10)
        provider.terminate([i.id for i in provider.list_instances()])
        for session in all_sessions(temp_dir):
            stop_session(session, grace_s=2)


def _running(store: Any) -> int:
    return sum(1 for r in store.all() if r.status is InstanceStatus.RAYLET_RUNNING)


def _infeasible(status: Any) -> Any:
    return status if status.infeasible else None


def _workers_idle_longer_than(status: Any, seconds: float, count: int) -> bool:
    idle = [n for n in status.nodes if not n.is_head and (n.idle_s or 0) > seconds]
    return len(idle) == count


def test_monitor_survives_a_redis_restart(tmp_path: Any) -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from runtime.node import free_port
    from runtime.redis_server import start_redis, wait_redis

    port, password = free_port("127.0.0.1"), "restart-test"

    started: list[Any] = []  # every server, so that none outlives the test even if one fails

    def start() -> Any:
        proc = start_redis("127.0.0.1", port, password, str(tmp_path), str(tmp_path / "log"))
        started.append(proc)
        wait_redis("127.0.0.1", port, password)
        return proc

    server = start()
    # no client-side retries: a refused connection fails the round at once
    no_retry = Retry(NoBackoff(), 0)
    client = redis.Redis(host="127.0.0.1", port=port, password=password, retry=no_retry)
    running, provider = start_monitor(client, new_cluster_id(), tick_s=0.2)
    keys = GcsKeys(running.monitor.options.cluster_id)
    try:
        server.kill()
        server.wait(timeout=10)
        before = running.monitor.rounds
        wait_for(lambda: running.monitor.rounds >= before + 2, 10, "rounds while Redis is down")
        server = start()
        load = [{"shape": {"CPU": 1}, "count": 1, "infeasible": False, "kind": "task"}]
        client.hset(keys.load, "node-a", json.dumps(load))
        client.publish(keys.demand_changed, "1")
        wait_for(lambda: provider.calls_of("launch"), 10, "a launch after the restart")
        assert running.thread.is_alive()
    finally:
        running.stop()
        for proc in started:
            proc.kill()
            proc.wait(timeout=10)

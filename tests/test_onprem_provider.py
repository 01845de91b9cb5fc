"""The on-prem provider: the shared contract with every host being the in-process SSH server on
127.0.0.1, then claiming, releasing with the stop command over SSH, and Ray's config spelling."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from provider_contract import CLUSTER, LimitedFactory, ProviderContract, ProviderFactory
from ssh_server import SSHServer, closed_port, ssh_server

from autoscaler.config import ClusterConfigError, load_config, open_provider
from providers.base import (
    NODE_KIND_HEAD,
    NODE_KIND_WORKER,
    TAG_NODE_KIND,
    CapacityError,
    Offering,
)
from providers.onprem import TAG_HOST, OnPremProvider, free_hosts

NODE_TYPES: dict[str, dict[str, Any]] = {"head": {}, "worker": {"resources": {"CPU": 1}}}
HEAD = {TAG_NODE_KIND: NODE_KIND_HEAD}
WORKER = {TAG_NODE_KIND: NODE_KIND_WORKER}
Factory = Callable[..., OnPremProvider]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    with ssh_server(tmp_path_factory.mktemp("sshd")) as running:
        yield running


@pytest.fixture
def factory(server: SSHServer, tmp_path: Path) -> Iterator[Factory]:
    """make(cluster, workers=4, **provider keys): hosts are all the test server; the stop
    command appends the instance id to <tmp_path>/stops.log. Released at the end."""
    made: list[OnPremProvider] = []

    def make(name: str = CLUSTER, workers: int = 4, **overrides: Any) -> OnPremProvider:
        config = {
            "type": "onprem",
            "head_ip": server.host,
            "worker_ips": [server.host] * workers,
            "ssh_port": server.port,
            "ssh_client": "asyncssh",  # no ssh master processes outliving a test
            "state_dir": str(tmp_path / "state"),
            "stop_command": f'echo "$RAYCTL_INSTANCE_ID" >> {tmp_path}/stops.log',
            **overrides,
        }
        provider = OnPremProvider(name, config, NODE_TYPES, auth=server.auth())
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.terminate([i.id for i in provider.list_instances()])


def stops(tmp_path: Path) -> list[str]:
    log = tmp_path / "stops.log"
    return log.read_text().split() if log.exists() else []


class TestOnPremContract(ProviderContract):
    node_type = "worker"
    expected_offerings = [Offering("onprem")]

    @pytest.fixture
    def provider_factory(self, factory: Factory) -> ProviderFactory:
        return factory

    @pytest.fixture
    def limited_factory(self, factory: Factory) -> LimitedFactory:
        return lambda name, capacity: factory(name, workers=capacity)


def test_no_free_host_is_a_capacity_error_naming_the_pool(factory: Factory) -> None:
    provider = factory(workers=1)
    (head,) = provider.launch("head", Offering("onprem"), 1, "h1", tags=HEAD)
    assert head.internal_ip == "127.0.0.1" and head.is_head
    with pytest.raises(CapacityError, match="head_ip"):
        provider.launch("head", Offering("onprem"), 1, "h2", tags=HEAD)
    provider.launch("worker", Offering("onprem"), 1, "w1", tags=WORKER)
    with pytest.raises(CapacityError, match=r"0 of 1 in provider.worker_ips free") as caught:
        provider.launch("worker", Offering("onprem"), 1, "w2", tags=WORKER)
    assert caught.value.offering == Offering("onprem")


def test_terminate_runs_the_stop_command_over_ssh_and_frees_the_host(
    factory: Factory, server: SSHServer, tmp_path: Path
) -> None:
    provider = factory(workers=0, worker_ips=[f"{server.host}:{server.port}", "10.255.0.1"])
    (first,) = provider.launch("worker", Offering("onprem"), 1, "w1", tags=WORKER)
    assert first.tags[TAG_HOST] == f"127.0.0.1:{server.port}"
    provider.terminate([first.id])
    assert stops(tmp_path) == [first.id]
    assert provider.list_instances() == []
    # The host is free again: the next claim takes it (pool order), not the second one.
    (second,) = provider.launch("worker", Offering("onprem"), 1, "w2", tags=WORKER)
    assert second.tags[TAG_HOST] == first.tags[TAG_HOST] and second.id != first.id


def test_an_unreachable_host_is_released_anyway(factory: Factory, tmp_path: Path) -> None:
    provider = factory(workers=1, ssh_port=closed_port())
    (instance,) = provider.launch("worker", Offering("onprem"), 1, "w1", tags=WORKER)
    provider.terminate([instance.id])
    assert stops(tmp_path) == []  # the stop command could not run
    assert provider.list_instances() == []
    assert len(provider.launch("worker", Offering("onprem"), 1, "w2", tags=WORKER)) == 1


@pytest.mark.skipif(not shutil.which("ssh"), reason="no ssh client")
def test_terminate_through_the_openssh_client(factory: Factory, tmp_path: Path) -> None:
    provider = factory(ssh_client="openssh")
    instances = provider.launch("worker", Offering("onprem"), 2, "w1", tags=WORKER)
    provider.terminate([i.id for i in instances])
    assert sorted(stops(tmp_path)) == sorted(i.id for i in instances)


def test_runner_reaches_the_host_with_the_node_environment(factory: Factory) -> None:
    provider = factory()
    (instance,) = provider.launch("worker", Offering("onprem"), 1, "w1", tags=WORKER)
    runner = provider.command_runner(instance, node_env={"RAYCTL_HEAD_ADDRESS": "10.0.0.1:6379"})
    try:
        result = runner.run('echo "$RAYCTL_INSTANCE_ID $RAYCTL_NODE_TYPE $RAYCTL_HEAD_ADDRESS"')
    finally:
        runner.close()
    assert result.output == f"{instance.id} worker 10.0.0.1:6379\n"


def test_claims_survive_a_new_provider_object(factory: Factory) -> None:
    monitor = factory(workers=2)
    launched = monitor.launch("worker", Offering("onprem"), 2, "w1", tags=WORKER)
    down = factory(workers=2)  # `rayctl down` with the head dead builds its own provider
    assert {i.id for i in down.list_instances()} == {i.id for i in launched}
    with pytest.raises(CapacityError):
        down.launch("worker", Offering("onprem"), 1, "w2", tags=WORKER)


def test_rays_local_type_with_ips_is_read_as_onprem(tmp_path: Path, server: SSHServer) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(textwrap.dedent(f"""
        cluster_name: rack
        provider:
          type: local
          head_ip: {server.host}
          worker_ips: [{server.host}, {server.host}]
          ssh_port: {server.port}
          state_dir: {tmp_path / "state"}
          stop_command: "true"
        auth:
          ssh_user: {server.user}
          ssh_private_key: {server.key_path}
        available_node_types:
          head: {{resources: {{CPU: 0}}}}
          worker: {{resources: {{CPU: 2}}, max_workers: 2}}
        head_node_type: head
    """))
    config = load_config(path)
    assert config.provider_type == "onprem"
    provider = open_provider(config)
    assert isinstance(provider, OnPremProvider)
    (head,) = provider.launch("head", Offering("onprem"), 1, "h", tags=HEAD)
    runner = provider.command_runner(head)
    try:
        runner.wait_ready(timeout_s=5)
        assert runner.run("echo $RAYCTL_NODE_TYPE").output == "head\n"
    finally:
        runner.close()
        provider.terminate([head.id])


def test_a_config_without_hosts_is_rejected_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(
        "cluster_name: rack\nprovider: {type: onprem, ssh_port: 22}\n"
        "available_node_types: {head: {resources: {CPU: 0}}}\n"
    )
    with pytest.raises(ClusterConfigError, match="head_ip and/or worker_ips"):
        load_config(path)


def test_free_hosts_counts_repeated_addresses_and_ignores_stale_claims() -> None:
    pool = ["a", "b", "a", "c"]
    assert free_hosts(pool, []) == pool
    assert free_hosts(pool, ["a", "c"]) == ["b", "a"]
    assert free_hosts(pool, ["a", "a", "gone"]) == ["b", "c"]

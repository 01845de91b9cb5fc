"""The gcp provider against a local fake Compute REST server, through the real
google-cloud-compute client (REST transport, anonymous credentials, custom endpoint)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gcp_fake import FakeCompute
from gcp_fake.api_errors import (
    permission_denied,
    rate_limited,
    unavailable,
)
from provider_contract import LimitedFactory, ProviderContract, ProviderFactory

from providers.base import (
    TAG_LAUNCH_HASH,
    TAG_NODE_KIND,
    AuthError,
    CapacityError,
    ConfigError,
    Market,
    Offering,
    ProviderState,
    QuotaError,
    TransientError,
)
from providers.gcp import GCPProvider

ZONE_A, ZONE_B = "us-central1-a", "us-central1-b"
GPU_SPOT = {
    "machineType": "n1-standard-8",
    "guestAccelerators": [{"acceleratorType": "nvidia-tesla-t4", "acceleratorCount": 1}],
    "scheduling": [{"provisioningModel": "SPOT"}],
}
NODE_TYPES: dict[str, dict[str, Any]] = {
    "head": {"node_config": {"machineType": "n1-standard-4"}},
    "cpu.worker": {"node_config": {"machineType": ["n1-standard-8", "e2-standard-4"]}},
    "gpu.spot": {"node_config": GPU_SPOT},
}
CONFIGS = Path(__file__).resolve().parent.parent / "cluster-configs"


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    with FakeCompute() as server:
        yield server


def make(fake: FakeCompute, cluster: str = "demo", node_types: dict[str, Any] | None = None,
         **provider: Any) -> GCPProvider:
    config = {"type": "gcp", "project_id": "proj", "region": "us-central1",
              "availability_zone": f"{ZONE_A},{ZONE_B}", "ssh_cidr": "203.0.113.0/24",
              "ssh_public_key": "ssh-ed25519 AAAAC3Nza test@laptop", **provider}
    return GCPProvider(cluster, config, node_types or NODE_TYPES, **fake.client_args())


def inserts(fake: FakeCompute) -> list[dict[str, Any]]:
    return [r.body or {} for r in fake.state.received
            if r.method == "POST" and r.path.endswith("/instances")]


def request_ids(fake: FakeCompute) -> list[str]:
    return [r.query["requestId"] for r in fake.state.received
            if r.method == "POST" and "/instances" in r.path]


# --- bootstrap --------------------------------------------------------------------------------


def test_bootstrap_is_idempotent_and_opens_ssh_only_from_the_configured_range(fake):
    provider = make(fake)
    first, second = provider.bootstrap(), provider.bootstrap()
    assert first == second
    assert len(fake.state.bodies("POST", "/global/firewalls")) == 2  # not 4
    rules = fake.state.firewalls
    assert rules["rayctl-demo-ssh"]["sourceRanges"] == ["203.0.113.0/24"]
    assert rules["rayctl-demo-ssh"]["allowed"] == [{"IPProtocol": "tcp", "ports": ["22"]}]
    internal = rules["rayctl-demo-internal"]
    assert internal["sourceTags"] == internal["targetTags"] == ["rayctl-demo"]
    assert internal["sourceRanges"] == []
    assert internal["network"] == "projects/proj/global/networks/default"


@pytest.mark.parametrize("wide", ["0.0.0.0/0", "1.2.3.4/0", "0::/0", "0.0.0.0/1", "10.0.0.0/7"])
def test_ssh_wider_than_a_slash_8_is_refused_unless_explicitly_allowed(fake, wide):
    """Parsed, not compared as a string: 1.2.3.4/0 and 0::/0 are the whole internet too."""
    with pytest.raises(ConfigError, match="allow_ssh_from_anywhere: true") as caught:
        make(fake, ssh_cidr=wide)
    assert "\n" not in str(caught.value)
    assert fake.state.firewalls == {}


def test_bootstrap_refuses_ssh_from_anywhere_unless_explicitly_allowed(fake):
    with pytest.raises(ConfigError, match="allow_ssh_from_anywhere"):
        make(fake, ssh_cidr="0.0.0.0/0").bootstrap()
    with pytest.raises(ConfigError, match="ssh_cidr is not set"):
        make(fake, ssh_cidr=None).bootstrap()
    assert fake.state.firewalls == {}
    make(fake, ssh_cidr="0.0.0.0/0", allow_ssh_from_anywhere=True).bootstrap()
    assert fake.state.firewalls["rayctl-demo-ssh"]["sourceRanges"] == ["0.0.0.0/0"]


def test_bootstrap_corrects_a_changed_ssh_range_and_purge_removes_the_rules(fake):
    make(fake).bootstrap()
    provider = make(fake, ssh_cidr="198.51.100.7/32")
    provider.bootstrap()
    assert fake.state.firewalls["rayctl-demo-ssh"]["sourceRanges"] == ["198.51.100.7/32"]
    assert len(fake.state.firewalls) == 2
    provider.purge()
    provider.purge()  # already gone: still fine
    assert fake.state.firewalls == {}


# --- launch -----------------------------------------------------------------------------------


def test_launch_labels_the_instance_and_sends_a_uuid_request_id(fake):
    provider = make(fake, cluster="Team.Demo")
    tags = {TAG_NODE_KIND: "head", TAG_LAUNCH_HASH: "f" * 64}
    [instance] = provider.launch("cpu.worker", provider.offerings("cpu.worker")[0], 1, "req-1",
                                 tags=tags)
    body = inserts(fake)[0]
    uuid.UUID(request_ids(fake)[0])  # a valid UUID, else the fake would have said 400
    labels = body["labels"]
    assert labels["rayctl-node-kind"] == "head"
    assert labels["rayctl-request-id"] == "req-1"
    assert labels["rayctl-node-type"].startswith("cpu-worker")  # '.' is not label syntax
    assert body["machineType"] == f"zones/{ZONE_A}/machineTypes/n1-standard-8"
    metadata = {i["key"]: i["value"] for i in body["metadata"]["items"]}
    assert metadata["ssh-keys"] == "ubuntu:ssh-ed25519 AAAAC3Nza test@laptop"
    assert body["tags"]["items"] == ["rayctl-team-demo"]
    # exact tags survive the label syntax (through the rayctl-tags metadata item)
    assert instance.node_type == "cpu.worker"
    assert instance.tags[TAG_LAUNCH_HASH] == "f" * 64
    assert instance.state == ProviderState.RUNNING and instance.internal_ip
    assert not any("setCommonInstanceMetadata" in r.path for r in fake.state.received)


def test_same_request_id_twice_launches_once(fake):
    provider = make(fake)
    offering = provider.offerings("head")[0]
    first = provider.launch("head", offering, 1, "req-7")
    again = provider.launch("head", offering, 1, "req-7")
    assert [i.id for i in again] == [i.id for i in first]
    assert len(inserts(fake)) == 1 and fake.state.instance_names() == [first[0].id]


def test_retry_unseen_by_a_lagging_list_reuses_the_gce_request_id(fake):
    fake.state.knobs.list_lag_s = 60  # list calls do not show the first launch yet
    offering = make(fake).offerings("head")[0]
    first = make(fake).launch("head", offering, 1, "req-8")
    again = make(fake).launch("head", offering, 1, "req-8")  # a restarted monitor, say
    ids = request_ids(fake)
    assert len(ids) == 2 and ids[0] == ids[1]
    assert [i.id for i in again] == [i.id for i in first]
    assert len(fake.state.instance_names()) == 1


def test_bulk_insert_is_all_or_nothing_when_asked(fake):
    fake.state.knobs.zone_capacity[ZONE_A] = 2
    provider = make(fake)
    offering = provider.offerings("cpu.worker")[0]
    with pytest.raises(CapacityError) as caught:
        provider.launch("cpu.worker", offering, 3, "pg-1", all_or_nothing=True)
    assert caught.value.offering == offering
    assert fake.state.instance_names() == []
    [bulk] = fake.state.bodies("POST", "/bulkInsert")
    assert (bulk["count"], bulk["minCount"]) == ("3", "3")
    partial = provider.launch("cpu.worker", offering, 3, "req-9")
    assert len(partial) == 2
    assert fake.state.bodies("POST", "/bulkInsert")[1]["minCount"] == "1"


def test_gpu_spot_body_fields_are_what_gce_expects(fake):
    provider = make(fake)
    [offering, _] = provider.offerings("gpu.spot")
    assert offering.market == Market.SPOT
    [instance] = provider.launch("gpu.spot", offering, 1, "gpu-1")
    body = inserts(fake)[0]
    assert body["scheduling"] == {"provisioningModel": "SPOT", "onHostMaintenance": "TERMINATE",
                                  "automaticRestart": False, "instanceTerminationAction": "DELETE"}
    assert body["guestAccelerators"] == [{
        "acceleratorType": f"projects/proj/zones/{ZONE_A}/acceleratorTypes/nvidia-tesla-t4",
        "acceleratorCount": 1}]
    assert instance.offering.market == Market.SPOT
    provider.launch("gpu.spot", offering, 2, "gpu-2")  # bulk takes bare type names
    properties = fake.state.bodies("POST", "/bulkInsert")[0]["instanceProperties"]
    assert properties["machineType"] == "n1-standard-8"
    assert properties["guestAccelerators"][0]["acceleratorType"] == "nvidia-tesla-t4"
    assert properties["scheduling"]["provisioningModel"] == "SPOT"


def test_stockout_in_one_zone_is_a_capacity_error_for_that_offering_only(fake):
    fake.state.knobs.stockout_zones.add(ZONE_A)
    provider = make(fake)
    zone_a, zone_b = provider.offerings("head")
    with pytest.raises(CapacityError) as caught:
        provider.launch("head", zone_a, 1, "req-10")
    assert caught.value.offering == zone_a and "ZONE_RESOURCE_POOL_EXHAUSTED" in str(caught.value)
    assert fake.state.instance_names() == []
    [instance] = provider.launch("head", zone_b, 1, "req-10")
    assert instance.offering.zone == ZONE_B
    # capacity comes back: the same request in zone A gets a fresh GCE requestId, not the
    # failed operation GCE would replay for the old one
    fake.state.knobs.stockout_zones.clear()
    assert provider.launch("head", zone_a, 1, "req-11")


@pytest.mark.parametrize("in_operation", [False, True], ids=["http-403", "operation"])
def test_quota_error_names_the_quota(fake, in_operation):
    fake.state.knobs.quota_metric = "NVIDIA_T4_GPUS"
    fake.state.knobs.quota_in_operation = in_operation
    provider = make(fake)
    with pytest.raises(QuotaError) as caught:
        provider.launch("gpu.spot", provider.offerings("gpu.spot")[0], 1, "q-1")
    assert caught.value.quota == "NVIDIA_T4_GPUS"
    assert "NVIDIA_T4_GPUS" in str(caught.value) and "Quotas" in str(caught.value)


@pytest.mark.parametrize(("error", "expected", "text"), [
    (rate_limited(), TransientError, "Rate Limit"),
    (unavailable(), TransientError, "unavailable"),
    (permission_denied("compute.instances.create", "projects/proj"), AuthError,
     "compute.instances.create"),
])
def test_http_errors_map_to_the_provider_error_tree(fake, error, expected, text):
    provider = make(fake)
    fake.state.fail_next(error, method="POST", path_contains="/instances")
    with pytest.raises(expected, match=text):
        provider.launch("head", provider.offerings("head")[0], 1, "e-1")
    assert provider.launch("head", provider.offerings("head")[0], 1, "e-1")  # next try works


def test_unknown_node_config_field_is_a_config_error_before_any_call(fake):
    types = {"bad": {"node_config": {"machineType": "n1-standard-4", "machineTyp": "x"}}}
    provider = make(fake, node_types=types)
    with pytest.raises(ConfigError, match="machineTyp"):
        provider.launch("bad", provider.offerings("bad")[0], 1, "c-1")
    assert inserts(fake) == []


# --- operations -------------------------------------------------------------------------------


def test_slow_operations_are_waited_for_with_operations_wait(fake):
    fake.state.knobs.operation_delay_s = 0.4
    fake.state.knobs.wait_cap_s = 0.1
    provider = make(fake)
    [instance] = provider.launch("head", provider.offerings("head")[0], 1, "slow-1")
    waits = [r for r in fake.state.received if r.path.endswith("/wait")]
    assert len(waits) >= 2  # the wait call returned unfinished and our loop asked again
    assert instance.state == ProviderState.RUNNING


def test_operation_timeout_is_transient_and_the_retry_finds_the_instance(fake):
    fake.state.knobs.operation_delay_s = 5.0  # still running when we look again below
    fake.state.knobs.wait_cap_s = 0.05
    provider = make(fake, operation_timeout_s=0.1)
    offering = provider.offerings("head")[0]
    with pytest.raises(TransientError, match="same request id"):
        provider.launch("head", offering, 1, "slow-2")
    [pending] = provider.list_instances()
    assert pending.state == ProviderState.PENDING
    assert [i.id for i in provider.launch("head", offering, 1, "slow-2")] == [pending.id]
    assert len(inserts(fake)) == 1


# --- list / terminate -------------------------------------------------------------------------


def test_list_shows_only_this_cluster_and_maps_states(fake):
    mine, other = make(fake, cluster="mine"), make(fake, cluster="other")
    launched = mine.launch("head", mine.offerings("head")[1], 1, "l-1")
    other.launch("head", other.offerings("head")[0], 1, "l-2")
    listed = mine.list_instances()
    assert [i.id for i in listed] == [launched[0].id]
    assert listed[0].offering.zone == ZONE_B and listed[0].tags["rayctl-cluster-name"] == "mine"
    with fake.state.lock:
        fake.state.instances[(ZONE_B, launched[0].id)].status = "STOPPING"
    assert mine.list_instances()[0].state == ProviderState.STOPPING
    with fake.state.lock:
        fake.state.instances[(ZONE_B, launched[0].id)].status = "TERMINATED"  # on-demand, stopped
    assert mine.list_instances()[0].state == ProviderState.STOPPED


def test_preempted_spot_instance_is_reported_gone(fake):
    provider = make(fake)
    spot = provider.launch("gpu.spot", provider.offerings("gpu.spot")[0], 2, "s-1")
    fake.state.preempt(spot[0].id)
    assert [i.id for i in provider.list_instances()] == [spot[1].id]
    provider.terminate([spot[0].id])
    assert fake.state.instance_names() == [spot[1].id]


def test_terminate_deletes_in_parallel_and_unknown_ids_are_success(fake):
    provider = make(fake)
    launched = provider.launch("cpu.worker", provider.offerings("cpu.worker")[0], 3, "t-1")
    fresh = make(fake)  # another process: learns the zones from one list call
    fresh.terminate([i.id for i in launched] + ["never-existed"])
    assert fake.state.instance_names() == [] and provider.list_instances() == []
    fresh.terminate([i.id for i in launched])  # again: already gone is fine


# --- resources and configs --------------------------------------------------------------------


def test_resource_autofill_from_machine_type_and_accelerators(fake):
    types = {**NODE_TYPES, "l4": {"node_config": {"machineType": "g2-standard-4"}}}
    provider = make(fake, node_types=types)
    gpu = provider.node_resources("gpu.spot")
    assert (gpu["CPU"], gpu["GPU"], gpu["accelerator_type:T4"]) == (8.0, 1.0, 1.0)
    assert gpu["memory"] == pytest.approx(30720 * 2**20 * 0.7)
    assert provider.node_resources("l4")["accelerator_type:L4"] == 1.0
    assert "GPU" not in provider.node_resources("head")


@pytest.mark.parametrize(("provider_keys", "node_config", "message"), [
    ({"availability_zone": "europe-west4-a"}, None, "not in region"),
    ({"cache_stopped_nodes": True}, None, "cache_stopped_nodes"),
    ({"sssh_cidr": "1.2.3.4/32"}, None, "sssh_cidr"),
    ({"command_runner": "local"}, None, "command_runner"),  # the tests' plug-in has its own
    ({"_api_endpoint": "http://127.0.0.1:1"}, None, "_api_endpoint"),  # a constructor argument
    ({}, {"machineType": "n1-standard-4",
          "scheduling": {"provisioningModel": "SPOT", "instanceTerminationAction": "STOP"}},
     "STOP"),
])
def test_invalid_configs_are_rejected_with_the_key_named(fake, provider_keys, node_config, message):
    types = {"x": {"node_config": node_config}} if node_config else None
    with pytest.raises(ConfigError, match=message):
        make(fake, node_types=types, **provider_keys)


@pytest.mark.parametrize("name", ["gcp.yaml", "gcp-gpu-spot.yaml"])
def test_example_cluster_configs_validate_and_launch(fake, name):
    from autoscaler.config import load_config

    config = load_config(CONFIGS / name)
    provider_config = {**config.provider, "ssh_public_key": "ssh-ed25519 AAAAC3Nza example"}
    provider = GCPProvider(config.cluster_name, provider_config,
                           config.node_types_for_provider(), **fake.client_args())
    provider.bootstrap()
    for node_type in config.available_node_types:
        offering = provider.offerings(node_type)[0]
        if offering.instance_type in ("n1-standard-4", "n1-standard-8"):  # the fake's catalog
            assert provider.launch(node_type, offering, 1, f"yaml-{node_type}")
    assert all(i.tags["rayctl-cluster-name"] == config.cluster_name
               for i in provider.list_instances())


# --- the SSH login: auth first, and the key `rayctl up` ships -----------------------------------


def ssh_target(runner: Any) -> Any:
    from providers.ssh import AsyncSSHRunner, OpenSSHRunner

    assert isinstance(runner, AsyncSSHRunner | OpenSSHRunner)
    return runner.target


def test_nodes_are_set_up_for_and_reached_as_the_auth_login(fake):
    provider = GCPProvider("demo", {"project_id": "proj", "region": "us-central1",
                                    "availability_zone": ZONE_A,
                                    "ssh_public_key": "ssh-ed25519 AAAAC3Nza me@laptop"},
                           NODE_TYPES, auth={"ssh_user": "alice", "ssh_private_key": "~/.ssh/g"},
                           **fake.client_args())
    [instance] = provider.launch("head", provider.offerings("head")[0], 1, "req-login")
    metadata = {i["key"]: i["value"] for i in inserts(fake)[0]["metadata"]["items"]}
    assert metadata["ssh-keys"] == "alice:ssh-ed25519 AAAAC3Nza me@laptop"
    target = ssh_target(provider.command_runner(instance))
    assert (target.user, target.key_path) == ("alice", "~/.ssh/g")
    with pytest.raises(ConfigError, match="auth.ssh_user"):  # one login, or the VM refuses it
        GCPProvider("demo", {"project_id": "p", "region": "us-central1",
                             "availability_zone": ZONE_A, "ssh_user": "ubuntu"}, {},
                    auth={"ssh_user": "alice"})


def test_the_heads_provider_reaches_workers_with_the_key_up_ships(fake, tmp_path, monkeypatch):
    import yaml
    from launcher_stubs import fake_wheel

    from autoscaler.config import load_config, open_provider, validate_config
    from autoscaler.launcher import ship
    from providers.registry import provider_section

    monkeypatch.setattr(ship, "build_wheel", fake_wheel)
    key = tmp_path / "id_gcp"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (tmp_path / "id_gcp.pub").write_text("ssh-ed25519 AAAAC3Nza me@laptop\n")
    raw = yaml.safe_load((CONFIGS / "gcp.yaml").read_text())
    raw["auth"] = {"ssh_user": "alice", "ssh_private_key": str(key)}
    raw["provider"].pop("ssh_user")  # Ray's place is auth.ssh_user
    raw["provider"].update(project_id="proj", ssh_public_key=f"{key}.pub")
    config = validate_config(raw)
    laptop = GCPProvider(config.cluster_name, provider_section(config.provider),
                         config.node_types_for_provider(), auth=config.auth.model_dump(),
                         **fake.client_args())
    resolved = validate_config({**config.to_dict(),
                                "provider": {**laptop.bootstrap(), "type": "gcp"}})
    [head] = laptop.launch("head", laptop.offerings("head")[0], 1, "req-head")
    shipment = ship.prepare_shipment(resolved, tmp_path / "ship", laptop.command_runner(head))
    assert (ship.KEY_REMOTE, str(key)) in shipment.mounts

    # The head's monitor builds its provider from the config `up` shipped.
    head_provider = open_provider(load_config(tmp_path / "ship" / "head_config.yaml"))
    [worker] = laptop.launch("cpu_worker", laptop.offerings("cpu_worker")[0], 1, "req-w")
    target = ssh_target(head_provider.command_runner(worker))
    assert (target.user, target.key_path) == ("alice", ship.KEY_REMOTE)
    assert target.host == worker.external_ip


# --- the provider contract shared with the fake, local and AWS providers -----------------------


class TestGCPContract(ProviderContract):
    node_type = "worker"
    expected_offerings = [Offering(t, z) for t in ("n1-standard-8", "e2-standard-4")
                          for z in (ZONE_A, ZONE_B)]
    contract_types = {"worker": {"node_config": {"machineType": "n1-standard-8,e2-standard-4"}}}

    @pytest.fixture
    def provider_factory(self, fake: FakeCompute) -> ProviderFactory:
        # Every provider object talks to the same fake cloud, as after a monitor restart.
        return lambda name: make(fake, cluster=name, node_types=self.contract_types)

    @pytest.fixture
    def limited_factory(self, fake: FakeCompute) -> LimitedFactory:
        def factory(name: str, capacity: int) -> GCPProvider:
            used = sum(1 for zone, _ in fake.state.instances if zone == ZONE_A)
            fake.state.knobs.zone_capacity[ZONE_A] = used + capacity
            return make(fake, cluster=name, node_types=self.contract_types)

        return factory

    def test_command_runner_runs_commands(self, provider_factory: ProviderFactory) -> None:
        # A GCE VM is reached over SSH (tests/test_ssh_runner.py runs the runner against a real
        # server); here: the runner targets the instance's address as the configured user.
        provider = provider_factory("contract")
        (instance,) = self.launch(provider, 1, "req-runner")
        runner = provider.command_runner(instance)
        target = runner.target  # type: ignore[attr-defined]
        assert target.host in (instance.external_ip, instance.internal_ip) and target.host
        assert target.user == provider.login["ssh_user"]

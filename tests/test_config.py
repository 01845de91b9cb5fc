"""Cluster YAML: Ray's keys and defaults, every error at once with a path and a hint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.config import (
    ClusterConfig,
    ClusterConfigError,
    default_config_path,
    load_config,
    validate_config,
)

REPO = Path(__file__).resolve().parent.parent

# The top-level properties of Ray's ray/autoscaler/ray-schema.json.
RAY_TOP_LEVEL_KEYS = {
    "cluster_name": "demo", "min_workers": 0, "max_workers": 2, "initial_workers": 0,
    "autoscaling_mode": "default", "target_utilization_fraction": 0.8, "upscaling_speed": 1.0,
    "idle_timeout_minutes": 5, "provider": {"type": "local"}, "auth": {"ssh_user": "ubuntu"},
    "docker": {"image": "rayproject/ray"}, "head_node_type": "head",
    "worker_default_node_type": "cpu", "head_node": {}, "worker_nodes": {}, "file_mounts": {},
    "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [],
    "rsync_filter": [], "metadata": {}, "initialization_commands": [], "setup_commands": [],
    "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
    "worker_start_ray_commands": [], "no_restart": False,
    "available_node_types": {"head": {}, "cpu": {"resources": {"CPU": 1}}},
}


def minimal(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "cluster_name": "demo",
        "provider": {"type": "local"},
        "available_node_types": {
            "head": {"resources": {"CPU": 0}},
            "cpu": {"resources": {"CPU": 1}, "node_config": {}},
        },
        "head_node_type": "head",
    }
    config.update(overrides)
    return config


def errors_of(raw: Any) -> list[str]:
    with pytest.raises(ClusterConfigError) as caught:
        validate_config(raw)
    for error in caught.value.errors:
        assert error in str(caught.value)  # the message lists every error
    return caught.value.errors


def test_defaults_are_rays() -> None:
    config = validate_config(minimal())
    assert (config.max_workers, config.upscaling_speed, config.idle_timeout_minutes) == (2, 1.0, 5)
    assert config.node_type("cpu").min_workers == 0
    assert config.worker_max("cpu") == 2  # worker types share the global cap
    assert config.worker_max("head") == 0  # the head type launches no extra copies
    assert config.idle_timeout_s("cpu") == 300.0
    assert config.auth.ssh_user == "ubuntu"
    assert config.warnings == []


def test_the_example_error_message_verbatim() -> None:
    raw = minimal()
    raw["available_node_types"]["gpu"] = {"resources": {"GPU": "two"}}
    assert errors_of(raw) == [
        'available_node_types.gpu.resources.GPU: must be a finite number from 0 to 1e+15, got "two"'
    ]


@pytest.mark.parametrize(
    "key, value",
    [("upscaling_speed", float("inf")), ("idle_timeout_minutes", float("nan")),
     ("upscaling_speed", 1e300), ("max_workers", 10**9)],
)
def test_infinite_or_absurd_numbers_are_refused(key: str, value: Any) -> None:
    """`upscaling_speed: .inf` used to pass and then fail every monitor round (OverflowError)."""
    errors = errors_of(minimal(**{key: value}))
    assert errors[0].startswith(f"{key}: must be a ") and "\n" not in errors[0], errors


def test_infinite_resources_and_unsafe_node_type_names_are_refused() -> None:
    raw = minimal()
    raw["available_node_types"]["cpu"]["resources"] = {"CPU": float("inf")}
    raw["available_node_types"]["a;rm -rf x"] = {"resources": {"CPU": 1}}
    errors = errors_of(raw)
    assert "available_node_types.cpu.resources.CPU: must be a finite number from 0 to 1e+15, " \
        "got Infinity" in errors
    [named] = [e for e in errors if "rm -rf" in e]
    assert named.startswith("available_node_types.'a;rm -rf x' (the name): must be 1-64 letters")
    assert "rename the node type" in named


def test_unknown_key_suggests_the_nearest_known_one() -> None:
    assert errors_of(minimal(max_worker=3)) == ["max_worker: unknown key; did you mean `max_workers`?"]
    raw = minimal()
    raw["available_node_types"]["cpu"]["min_worker"] = 1
    assert errors_of(raw) == [
        "available_node_types.cpu.min_worker: unknown key; did you mean `min_workers`?"
    ]


def test_docker_is_not_supported_by_name() -> None:
    (error,) = errors_of(minimal(docker={"image": "rayproject/ray:latest"}))
    assert error.startswith("docker is not supported by rayctl; ")


def test_disabled_docker_and_deprecated_keys_are_warnings() -> None:
    config = validate_config(minimal(docker={"image": ""}, autoscaling_mode="aggressive"))
    assert len(config.warnings) == 2
    assert any("autoscaling_mode is not supported by rayctl" in w for w in config.warnings)
    assert any(w.startswith("docker: ignored") for w in config.warnings)


def test_legacy_layout_keys_are_errors() -> None:
    errors = errors_of(minimal(head_node={"InstanceType": "m5.large"}, min_workers=1))
    assert [e.split(" ")[0] for e in errors] == ["head_node", "min_workers"]
    assert all("is not supported by rayctl" in e for e in errors)


def test_every_error_is_listed_at_once() -> None:
    raw = minimal(max_workers="many", setup_commands=["ok", 3], head_node_type="haed")
    raw["available_node_types"]["cpu"].update(min_workers=3, max_workers=1, resources={"CPU": -1})
    assert sorted(errors_of(raw)) == sorted([
        'max_workers: must be a whole number from 0 to 1,000,000, got "many"',
        "setup_commands[1]: must be a string, got 3",
        "available_node_types.cpu.resources.CPU: must be a finite number from 0 to 1e+15, got -1",
        '''head_node_type: "haed" is not in available_node_types; did you mean `head`?''',
        "available_node_types.cpu.min_workers: 3 is more than this type's max_workers 1; "
        "lower min_workers or raise max_workers",
    ])


def test_min_workers_over_the_global_cap_is_an_error() -> None:
    raw = minimal(max_workers=1)
    raw["available_node_types"]["cpu"].update(min_workers=2, max_workers=5)
    assert errors_of(raw) == [
        "max_workers: 1 is less than the sum of min_workers over node types (2); "
        "raise max_workers or lower some min_workers"
    ]


def test_required_keys_are_named() -> None:
    errors = errors_of({"provider": {"type": "local"}, "available_node_types": {"only": {}}})
    assert errors == ["cluster_name: is required"]
    assert errors_of(None) == ["top level: must be a mapping of keys, got an empty file"]


def test_head_node_type_is_inferred_only_when_unambiguous() -> None:
    raw = minimal()
    del raw["head_node_type"]
    (error,) = errors_of(raw)
    assert error.startswith("head_node_type: is required when there are several node types")
    single = validate_config({"cluster_name": "one", "provider": {"type": "local"},
                              "available_node_types": {"solo": {}}})
    assert single.head_node_type == "solo"


def test_ray_local_provider_with_ips_is_onprem() -> None:
    raw = minimal(provider={"type": "local", "head_ip": "10.0.0.1", "worker_ips": ["10.0.0.2"]})
    config = validate_config(raw)
    assert config.provider_type == "onprem"
    assert config.provider["worker_ips"] == ["10.0.0.2"]
    assert validate_config(minimal()).provider_type == "local"


def test_provider_type_errors() -> None:
    assert errors_of(minimal(provider={"type": "lcoal"})) == [
        'provider.type: unknown provider type "lcoal"; did you mean `local`?'
    ]
    (error,) = errors_of(minimal(provider={"type": "azure"}))
    assert error.startswith("provider.type: azure is not supported by rayctl; supported: ")


def test_provider_sections_are_validated_by_the_provider() -> None:
    raw = minimal(provider={"type": "local", "state_dri": "/tmp/x", "terminate_grace_s": -1})
    raw["available_node_types"]["cpu"]["node_config"] = {"InstanceType": "m5.large"}
    assert sorted(errors_of(raw)) == sorted([
        "provider.state_dri: unknown key; did you mean `state_dir`?",
        "provider.terminate_grace_s: must be >= 0, got -1",
        "available_node_types.cpu.node_config.InstanceType: unknown key; "
        "this section takes no keys",
    ])


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_cloud_sections_have_no_test_only_keys(name: str) -> None:
    """The tests' local simulation is a plug-in of its own (tests/plugins/local_clouds.py):
    the shipped providers refuse its keys like any unknown key."""
    raw = yaml.safe_load((REPO / "cluster-configs" / name).read_text())
    raw["provider"].update(command_runner="local", local_runner_dir="/tmp/nodes")
    assert [e.split(";")[0] for e in errors_of(raw)] == [
        "provider.command_runner: unknown key", "provider.local_runner_dir: unknown key"]


def test_external_providers_are_validated_by_their_own_models(tmp_path: Path) -> None:
    from plugins.local_clouds import LocalAWSProvider, external_section

    raw = yaml.safe_load((REPO / "cluster-configs" / "aws.yaml").read_text())
    raw["provider"] = external_section(LocalAWSProvider, region="us-west-2",
                                       nodes_dir=str(tmp_path))
    config = validate_config(raw)
    assert config.provider["module"] == "plugins.local_clouds.LocalAWSProvider"
    raw["provider"] = external_section(LocalAWSProvider, region="us-west-2",
                                       nodes_dri=str(tmp_path))
    raw["available_node_types"]["ray.head.default"]["node_config"].pop("InstanceType")
    assert sorted(errors_of(raw)) == [
        "available_node_types.ray.head.default.node_config.InstanceType: is required",
        "provider.nodes_dir: is required",
        "provider.nodes_dri: unknown key; did you mean `nodes_dir`?",
    ]


@pytest.mark.parametrize(("section", "error"), [
    ({"type": "external"}, "provider.module: `type: external` needs `module: "
                           "package.module.ClassName`, the provider class to load"),
    ({"type": "external", "module": "no_such_package.Provider"},
     "provider.module: cannot import 'no_such_package' (No module named 'no_such_package'); "
     "install it on this machine and the head, or fix the name"),
    ({"type": "external", "module": "providers.aws.NoSuchProvider"},
     "provider.module: 'providers.aws' has no class 'NoSuchProvider'"),
])
def test_an_external_provider_that_cannot_load_is_named(
    section: dict[str, str], error: str
) -> None:
    assert errors_of(minimal(provider=section)) == [error]


def test_packaged_default_loads_and_matches_the_example(tmp_path: Path) -> None:
    packaged = default_config_path()
    assert packaged.read_text() == (REPO / "cluster-configs" / "local.yaml").read_text()
    config = load_config()
    assert config.provider_type == "local"
    assert config.head_node_type in config.available_node_types
    assert load_config(REPO / "cluster-configs" / "local.yaml") == config


def test_file_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ClusterConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("cluster_name: [unclosed\n")
    with pytest.raises(ClusterConfigError, match="not valid YAML"):
        load_config(broken)


def test_resolved_config_round_trips_through_yaml() -> None:
    config = validate_config(minimal(setup_commands=["pip install numpy"]))
    shipped = yaml.safe_load(config.to_yaml())
    assert shipped["available_node_types"]["cpu"]["max_workers"] == 2  # resolved, not implied
    assert validate_config(shipped) == config


def test_commands_merge_as_in_ray() -> None:
    raw = minimal(setup_commands=["common"], head_setup_commands=["head"],
                  worker_setup_commands=["worker"], initialization_commands=["init"])
    raw["available_node_types"]["gpu"] = {"worker_setup_commands": ["gpu only"],
                                          "initialization_commands": []}
    config = validate_config(raw)
    assert config.setup_commands_for("head", head=True) == ["common", "head"]
    assert config.setup_commands_for("cpu", head=False) == ["common", "worker"]
    assert config.setup_commands_for("gpu", head=False) == ["gpu only"]
    assert config.initialization_commands_for("cpu") == ["init"]
    assert config.initialization_commands_for("gpu") == []


def test_launch_hash_tracks_what_makes_the_node() -> None:
    base = validate_config(minimal())

    def changed(**overrides: Any) -> ClusterConfig:
        return validate_config(minimal(**overrides))

    assert base.launch_hash("cpu") == validate_config(minimal()).launch_hash("cpu")
    assert len(base.launch_hash("cpu")) == 32
    assert base.launch_hash("cpu") != base.launch_hash("head")
    assert base.launch_hash("cpu") == changed(max_workers=7, idle_timeout_minutes=1).launch_hash("cpu")
    assert base.launch_hash("cpu") != changed(setup_commands=["x"]).launch_hash("cpu")
    assert base.launch_hash("cpu") != changed(file_mounts={"/data": "./data"}).launch_hash("cpu")
    other_resources = minimal()
    other_resources["available_node_types"]["cpu"]["resources"] = {"CPU": 2}
    assert base.launch_hash("cpu") != validate_config(other_resources).launch_hash("cpu")
    # The head's type used as a worker gets the worker commands, hence another hash.
    assert base.launch_hash("head", head=False) != base.launch_hash("head")


def test_every_ray_key_is_recognized() -> None:
    for key, value in RAY_TOP_LEVEL_KEYS.items():
        try:
            config = validate_config(minimal(**{key: value}))
            assert not any("unknown key" in w for w in config.warnings)
        except ClusterConfigError as exc:
            assert exc.errors == [e for e in exc.errors if "is not supported by rayctl" in e], key


def test_per_type_idle_timeout_overrides_the_global_one() -> None:
    raw = minimal(idle_timeout_minutes=2)
    raw["available_node_types"]["cpu"]["idle_timeout_s"] = 15
    config = validate_config(raw)
    assert (config.idle_timeout_s("cpu"), config.idle_timeout_s("head")) == (15.0, 120.0)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "cluster-configs").glob("*.yaml")))
def test_every_example_cluster_config_is_valid(name: str) -> None:
    config = load_config(REPO / "cluster-configs" / name)
    assert config.head_node_type in config.available_node_types


@pytest.mark.parametrize("name, tls", [("aws.yaml", True), ("gcp.yaml", True),
                                       ("local.yaml", False), ("onprem.yaml", False)])
def test_clusters_on_clouds_start_their_head_with_tls_unless_told_otherwise(
    name: str, tls: bool
) -> None:
    """Cloud nodes talk over networks the cluster does not own: the default head start command
    turns TLS on there (its certificates then travel in the token file the launcher ships)."""
    raw = yaml.safe_load((REPO / "cluster-configs" / name).read_text())
    raw.pop("head_start_ray_commands", None)
    [command] = validate_config(raw).start_commands_for(head=True)
    assert command.endswith(" --tls") is tls
    raw["head_start_ray_commands"] = ["rayctl start --head --autoscaling-config=x.yaml"]
    assert validate_config(raw).start_commands_for(head=True) == raw["head_start_ray_commands"]

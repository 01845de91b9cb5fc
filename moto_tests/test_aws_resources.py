"""Resource autofill and config validation of the AWS provider against moto."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from aws_fakes import AMI, provider_section

from providers.aws import AWSProvider
from providers.base import ConfigError, Market, NodeProvider
from providers.registry import provider_class

MakeProvider = Callable[..., AWSProvider]
GIB = 1024**3


def _types(**node_configs: dict[str, object]) -> dict[str, dict[str, object]]:
    return {name: {"node_config": {"ImageId": AMI, **nc}} for name, nc in node_configs.items()}


def test_gpu_type_is_autofilled_with_count_and_model(make_provider: MakeProvider) -> None:
    provider = make_provider(
        node_types=_types(
            t4={"InstanceType": "g4dn.xlarge"}, v100={"InstanceType": "p3dn.24xlarge"}
        )
    )
    assert provider.node_resources("t4") == {
        "CPU": 4.0,
        "memory": float(int(16 * GIB * 0.7)),
        "GPU": 1.0,
        "accelerator_type:T4": 1.0,
    }
    v100 = provider.node_resources("v100")
    assert v100["GPU"] == 8.0 and v100["accelerator_type:V100"] == 1.0 and v100["CPU"] == 96.0


def test_cpu_type_has_no_gpu_and_config_values_win(make_provider: MakeProvider) -> None:
    node_types = _types(cpu={"InstanceType": "m5.large"})
    node_types["cpu"]["resources"] = {"CPU": 1, "custom": 3}
    resources = make_provider(node_types=node_types).node_resources("cpu")
    assert resources == {"CPU": 1.0, "memory": float(int(8 * GIB * 0.7)), "custom": 3.0}


def test_several_instance_types_promise_only_what_all_have(make_provider: MakeProvider) -> None:
    provider = make_provider(
        node_types=_types(mixed={"InstanceType": ["m5.xlarge", "g4dn.xlarge", "m5.2xlarge"]})
    )
    assert provider.node_resources("mixed") == {"CPU": 4.0, "memory": float(int(16 * GIB * 0.7))}


def test_unknown_instance_type_is_a_config_error(make_provider: MakeProvider) -> None:
    provider = make_provider(node_types=_types(old={"InstanceType": "p3.2xlarge"}))
    with pytest.raises(ConfigError, match="p3.2xlarge"):
        provider.node_resources("old")


def test_invalid_provider_section_names_the_key(make_provider: MakeProvider) -> None:
    with pytest.raises(ConfigError, match=r"provider\.availabilty_zone"):
        make_provider(provider=provider_section(availabilty_zone="us-west-2a"))
    with pytest.raises(ConfigError, match=r"available_node_types\.cpu\.node_config\.InstanceType"):
        make_provider(node_types={"cpu": {"node_config": {"ImageId": AMI}}})


def test_boto3_is_not_imported_with_the_providers_package() -> None:
    import subprocess
    import sys

    code = "import sys, providers.aws; print('boto3' in sys.modules or 'botocore' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["aws.yaml", "aws-gpu-spot.yaml"])
def test_example_configs_build_a_provider(name: str) -> None:
    import yaml

    path = Path(__file__).resolve().parent.parent / "cluster-configs" / name
    config = yaml.safe_load(path.read_text())
    provider = AWSProvider(
        config["cluster_name"], config["provider"], config["available_node_types"]
    )
    assert isinstance(provider, NodeProvider)
    assert provider_class({"type": "aws"}) is AWSProvider
    for node_type in config["available_node_types"]:
        assert provider.offerings(node_type)
    if name == "aws-gpu-spot.yaml":
        markets = [o.market for o in provider.offerings("gpu.spot")]
        assert markets == [Market.SPOT] * 6 + [Market.ON_DEMAND] * 6

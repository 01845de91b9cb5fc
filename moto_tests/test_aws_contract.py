"""The shared provider contract (tests/provider_contract.py) run against the AWS provider on moto.
Commands run on the instances of the test plug-in LocalAWSProvider (the shipped provider with
instances simulated here), since moto's instances never boot; capacity limits have no moto
model (failover is tested in test_aws_launch.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cluster  # noqa: F401 - puts tests/ (provider_contract, plugins) on the path
import pytest
from aws_fakes import AMI, provider_section
from plugins.local_clouds import LocalAWSProvider
from provider_contract import LimitedFactory, ProviderContract, ProviderFactory

from providers.aws import AWSProvider
from providers.base import Offering

CONTRACT_TYPES: dict[str, dict[str, Any]] = {
    "head": {"node_config": {"InstanceType": "m5.large", "ImageId": AMI}},
    "worker": {"node_config": {"InstanceType": ["m5.large", "m5.xlarge"], "ImageId": AMI}},
}


class TestAWSContract(ProviderContract):
    node_type = "worker"
    expected_offerings = [
        Offering(t, z) for t in ("m5.large", "m5.xlarge") for z in ("us-west-2a", "us-west-2b")
    ]

    @pytest.fixture
    def provider_factory(
        self, make_provider: Callable[..., AWSProvider], tmp_path: Path
    ) -> ProviderFactory:
        # Every provider object sees the same mocked account, as after a monitor restart, and
        # is built from the config its cluster's first bootstrap resolved, as on the head
        # (moto's bootstrap takes a second or two: once per cluster is enough).
        section = provider_section(nodes_dir=str(tmp_path / "n"))
        resolved: dict[str, dict[str, Any]] = {}

        def factory(name: str) -> AWSProvider:
            def make(config: dict[str, Any]) -> AWSProvider:
                return make_provider(config, CONTRACT_TYPES, cluster=name, cls=LocalAWSProvider)

            if name not in resolved:
                resolved[name] = make(section).bootstrap()
            return make(resolved[name])

        return factory

    @pytest.fixture
    def limited_factory(self) -> LimitedFactory:
        return None  # moto has no capacity model to limit

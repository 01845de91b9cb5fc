"""Fixtures for the AWS provider against moto: fake credentials, a mocked account per test,
and a provider factory wired to a virtual sleep and clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_fakes import (
    CLUSTER,
    REGION,
    VirtualClock,
    VirtualSleep,
    node_types_section,
    provider_section,
)

from providers.aws import AWSProvider


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Never read a developer's real AWS config or credentials, never reach AWS."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def aws() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def sleeps() -> VirtualSleep:
    return VirtualSleep()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def make_provider(
    aws: None, tmp_path: Path, sleeps: VirtualSleep, clock: VirtualClock
) -> Callable[..., AWSProvider]:
    def make(
        provider: dict[str, Any] | None = None,
        node_types: dict[str, dict[str, Any]] | None = None,
        cluster: str = CLUSTER,
        cls: type[AWSProvider] = AWSProvider,
        **kwargs: Any,
    ) -> AWSProvider:
        kwargs.setdefault("key_dir", tmp_path / "keys")
        return cls(
            cluster,
            provider if provider is not None else provider_section(),
            node_types if node_types is not None else node_types_section(),
            sleep=sleeps,
            clock=clock,
            **kwargs,
        )

    return make


@pytest.fixture
def make_local_provider(
    make_provider: Callable[..., AWSProvider], tmp_path: Path
) -> Callable[..., Any]:
    """Like make_provider, for the test plug-in whose instances run in `tmp_path/nodes/`."""
    import aws_cluster  # noqa: F401 - puts tests/ (the plug-ins) on the path
    from plugins.local_clouds import LocalAWSProvider

    def make(cluster: str = CLUSTER, **section: Any) -> Any:
        config = provider_section(**{"nodes_dir": str(tmp_path / "nodes"), **section})
        return make_provider(config, cluster=cluster, cls=LocalAWSProvider)

    return make


@pytest.fixture
def ec2(aws: None) -> Any:
    import boto3

    return boto3.client("ec2", region_name=REGION)

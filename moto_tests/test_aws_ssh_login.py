"""Which SSH login reaches AWS nodes: the cluster's `auth:` first (Ray's place), then what
bootstrap created; and the key `rayctl up` ships to the head is the one the head's provider
then reaches workers with, as the configured user."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cluster  # noqa: F401 - puts tests/ (launcher_stubs) on the path
import pytest
import yaml
from aws_cluster import AWS_YAML, HEAD_TYPE, WORKER_TYPE
from aws_fakes import AMI, REGION, provider_section
from launcher_stubs import fake_wheel

from autoscaler.config import load_config, open_provider, validate_config
from autoscaler.launcher import ship
from autoscaler.launcher.head import LAUNCHER_DIR_ENV
from autoscaler.launcher.up import bootstrap
from providers.aws import AWSProvider
from providers.base import NODE_KIND_HEAD, TAG_NODE_KIND, ConfigError, Instance, NodeProvider
from providers.ssh import AsyncSSHRunner, OpenSSHRunner

NAME = "login"


def aws_config(tmp_path: Path, auth: dict[str, Any], **node_config: Any) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(AWS_YAML.read_text())
    raw.update(cluster_name=NAME, auth=auth)
    raw["provider"].update(region=REGION, key_dir=str(tmp_path / "keys"))
    for entry in raw["available_node_types"].values():
        entry["node_config"].update(ImageId=AMI, **node_config)
    return raw


def launch(provider: NodeProvider, node_type: str, request_id: str, **tags: str) -> Instance:
    [instance] = provider.launch(node_type, provider.offerings(node_type)[0], 1, request_id,
                                 tags=tags)
    return instance


def ssh_target(runner: Any) -> Any:
    assert isinstance(runner, AsyncSSHRunner | OpenSSHRunner)
    return runner.target


def test_the_heads_provider_reaches_workers_with_the_key_up_ships(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LAUNCHER_DIR_ENV, str(tmp_path / "launcher"))
    monkeypatch.setattr(ship, "build_wheel", fake_wheel)
    config = validate_config(aws_config(tmp_path, {"ssh_user": "ec2-user"}))
    resolved, provider = bootstrap(config, use_cache=False)  # as `rayctl up` does
    created = resolved.provider["resolved"]["ssh_private_key"]
    head = launch(provider, HEAD_TYPE, "req-head", **{TAG_NODE_KIND: NODE_KIND_HEAD})
    laptop_runner = provider.command_runner(head)
    assert (ssh_target(laptop_runner).user, ssh_target(laptop_runner).key_path) == (
        "ec2-user", created)

    shipment = ship.prepare_shipment(resolved, tmp_path / "ship", laptop_runner)
    assert (ship.KEY_REMOTE, created) in shipment.mounts

    # The head's monitor builds its provider from the config `up` shipped.
    head_config = load_config(tmp_path / "ship" / "head_config.yaml")
    head_provider = open_provider(head_config)
    worker = launch(head_provider, WORKER_TYPE, "req-worker")
    target = ssh_target(head_provider.command_runner(worker))
    assert (target.user, target.key_path) == ("ec2-user", ship.KEY_REMOTE)
    assert target.host == worker.external_ip


def test_a_configured_key_is_used_with_its_key_pair(
    make_provider: Callable[..., AWSProvider], ec2: Any, tmp_path: Path
) -> None:
    auth = {"ssh_user": "ubuntu", "ssh_private_key": "~/.ssh/team.pem"}
    without = make_provider(auth=auth)
    with pytest.raises(ConfigError, match="KeyName"):
        without.bootstrap()  # its instances would carry a key pair of rayctl's making
    types = {name: {**entry, "node_config": {**entry["node_config"], "KeyName": "team"}}
             for name, entry in aws_config(tmp_path, {})["available_node_types"].items()}
    provider = make_provider(provider_section(), types, auth=auth)
    provider.bootstrap()
    assert ec2.describe_key_pairs()["KeyPairs"] == []  # none created
    instance = launch(provider, WORKER_TYPE, "req-team")
    assert ssh_target(provider.command_runner(instance)).key_path == "~/.ssh/team.pem"


def test_a_provider_user_that_contradicts_auth_is_refused(
    make_provider: Callable[..., AWSProvider],
) -> None:
    with pytest.raises(ConfigError, match="auth.ssh_user"):
        make_provider(provider_section(ssh_user="ec2-user"), auth={"ssh_user": "ubuntu"})
    # The older place alone still works.
    alone = make_provider(provider_section(ssh_user="ec2-user"))
    [instance] = alone.launch("cpu", alone.offerings("cpu")[0], 1, "req-alone")
    assert ssh_target(alone.command_runner(instance)).user == "ec2-user"

"""The test plug-in LocalAWSProvider (tests/plugins/local_clouds.py): the shipped AWS provider
on moto, its instances run as commands in their own directory on this machine; an instance's
end (terminate, or EC2 ending it: a spot interruption) stops what it ran. The shipped provider
itself has no such mode: a config asking for one is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from aws_fakes import VirtualClock, provider_section

from providers.aws import AWSProvider
from providers.aws.provider import LIST_GRACE_S
from providers.base import ConfigError, Instance


def sleeper(provider: Any, instance: Instance, nodes: Path) -> psutil.Process:
    """A background process started on the instance, as a raylet would be."""
    provider.command_runner(instance).run("sleep 60 & echo $! > sleeper.pid")
    return psutil.Process(int((nodes / instance.id / "sleeper.pid").read_text()))


def gone(process: psutil.Process) -> bool:
    return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE


def test_commands_run_in_the_instance_directory_with_its_identity(
    make_local_provider: Callable[..., Any], tmp_path: Path
) -> None:
    provider = make_local_provider()
    [instance] = provider.launch("cpu", provider.offerings("cpu")[0], 1, "req-plugin")
    runner = provider.command_runner(instance)
    ran = runner.run('echo "$PWD $RAYCTL_INSTANCE_ID $RAYCTL_NODE_TYPE $RAYCTL_TEMP_DIR"')
    slot = tmp_path / "nodes" / instance.id
    assert ran.exit_code == 0
    assert ran.output.split() == [str(slot), instance.id, "cpu", str(slot / "tmp")]
    # The launcher installs no wheel there and the node's services bind 127.0.0.1.
    assert runner.on_this_machine
    provider.terminate([instance.id])


def test_terminate_stops_the_processes_of_the_instance(
    make_local_provider: Callable[..., Any], tmp_path: Path
) -> None:
    provider = make_local_provider()
    keep, drop = provider.launch("cpu", provider.offerings("cpu")[0], 2, "req-procs")
    sleepers = [sleeper(provider, i, tmp_path / "nodes") for i in (keep, drop)]
    try:
        provider.terminate([drop.id])
        assert gone(sleepers[1])
        assert not gone(sleepers[0])
        assert [i.id for i in provider.list_instances()] == [keep.id]
    finally:
        provider.terminate([keep.id])
    assert gone(sleepers[0])


def test_an_instance_ec2_ended_stops_its_processes_when_listed(
    make_local_provider: Callable[..., Any], tmp_path: Path, ec2: Any, clock: VirtualClock
) -> None:
    """A spot interruption ends the VM behind the provider's back: the next listing, which
    no longer shows it running, stops what it ran (another cluster's instances are left)."""
    provider = make_local_provider()
    other = make_local_provider(cluster="other")
    [ended] = provider.launch("cpu", provider.offerings("cpu")[0], 1, "req-ended")
    [elsewhere] = other.launch("cpu", other.offerings("cpu")[0], 1, "req-other")
    processes = [sleeper(p, i, tmp_path / "nodes") for p, i in ((provider, ended),
                                                               (other, elsewhere))]
    try:
        ec2.terminate_instances(InstanceIds=[ended.id])
        clock.advance(LIST_GRACE_S + 1)  # past the grace for instances launched moments ago
        assert ended.id not in {i.id for i in provider.list_instances()}
        assert gone(processes[0])
        assert not gone(processes[1])
    finally:
        other.terminate([elsewhere.id])


def test_the_plugin_needs_an_absolute_nodes_dir(
    make_local_provider: Callable[..., Any],
) -> None:
    with pytest.raises(ConfigError, match="nodes_dir"):
        make_local_provider(nodes_dir="relative/nodes")


def test_the_shipped_provider_has_no_local_runner_mode(
    make_provider: Callable[..., AWSProvider],
) -> None:
    for key, value in (("command_runner", "local"), ("local_runner_dir", "/tmp/nodes")):
        with pytest.raises(ConfigError, match=f"provider.{key}"):
            make_provider(provider_section(**{key: value}))

"""The AWS provider's test-only local runner seam (`command_runner: local`): instances run their
commands in their own directory on this machine, terminating one stops what it ran, and the
setting is refused without the directory it needs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aws_cluster  # noqa: F401 - keeps imports in line with the other moto tests
import psutil
import pytest
from aws_fakes import provider_section

from providers.aws import AWSProvider
from providers.base import ConfigError


def test_commands_run_in_the_instance_directory_with_its_identity(
    make_provider: Callable[..., AWSProvider], tmp_path: Path
) -> None:
    provider = make_provider(provider_section(command_runner="local",
                                             local_runner_dir=str(tmp_path / "nodes")))
    [instance] = provider.launch("cpu", provider.offerings("cpu")[0], 1, "req-seam")
    ran = provider.command_runner(instance).run(
        'echo "$PWD $RAYCTL_INSTANCE_ID $RAYCTL_NODE_TYPE $RAYCTL_TEMP_DIR"')
    slot = tmp_path / "nodes" / instance.id
    assert ran.exit_code == 0
    assert ran.output.split() == [str(slot), instance.id, "cpu", str(slot / "tmp")]


def test_terminate_stops_the_processes_of_the_instance(
    make_provider: Callable[..., AWSProvider], tmp_path: Path
) -> None:
    provider = make_provider(provider_section(command_runner="local",
                                             local_runner_dir=str(tmp_path / "nodes")))
    keep, drop = provider.launch("cpu", provider.offerings("cpu")[0], 2, "req-procs")
    sleepers = []
    for instance in (keep, drop):
        runner = provider.command_runner(instance)
        runner.run("sleep 60 & echo $! > sleeper.pid")
        pid_file = tmp_path / "nodes" / instance.id / "sleeper.pid"
        sleepers.append(psutil.Process(int(pid_file.read_text())))  # written before run returns
    try:
        provider.terminate([drop.id])
        assert not sleepers[1].is_running() or sleepers[1].status() == psutil.STATUS_ZOMBIE
        assert sleepers[0].is_running()
        assert [i.id for i in provider.list_instances()] == [keep.id]
    finally:
        provider.terminate([keep.id])
    assert not sleepers[0].is_running() or sleepers[0].status() == psutil.STATUS_ZOMBIE


def test_local_runner_without_a_directory_is_refused(
    make_provider: Callable[..., AWSProvider],
) -> None:
    with pytest.raises(ConfigError, match="local_runner_dir"):
        make_provider(provider_section(command_runner="local"))
    with pytest.raises(ConfigError, match="command_runner"):
        make_provider(provider_section(command_runner="telnet"))

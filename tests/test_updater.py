"""The node updater on real nodes: a local slot (the local provider's runner) and an SSH host (the
in-process server, through asyncssh and the OpenSSH client), then its pure decisions."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ssh_server import SSHServer, closed_port, ssh_server

from autoscaler.config import ClusterConfig, validate_config
from autoscaler.launcher.updater import (
    NodeUpdater,
    Stage,
    UpdatePlan,
    UpdateStatus,
    plan_update,
    setup_hash,
    should_run_setup,
)
from providers.base import CommandRunner, Offering
from providers.local import LocalProvider
from providers.ssh import runner_for

HEAD_ADDRESS = "10.0.0.1:6379"
TOKEN = "tok-8c1d9e2f"
START = (
    'echo start >> order.log; echo "$RAYCTL_HEAD_ADDRESS|$RAYCTL_NODE_TYPE|$RAYCTL_INSTANCE_ID"'
    ' > env.txt; cat "$RAYCTL_TOKEN_FILE" > token.copy'
)


@dataclasses.dataclass
class Node:
    runner: CommandRunner
    dir: Path  # where its commands run, seen from this machine
    instance_id: str
    server: SSHServer | None = None


@pytest.fixture(params=["local", "asyncssh", "openssh"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Node]:
    if request.param == "local":
        provider = LocalProvider("upd", {"type": "local", "state_dir": str(tmp_path / "state")},
                                 {"worker": {}})
        (instance,) = provider.launch("worker", Offering("local"), 1, "r1")
        try:
            yield Node(provider.command_runner(instance), provider.slot_dir(instance.id),
                       instance.id)
        finally:
            provider.terminate([instance.id])
        return
    if request.param == "openssh" and not shutil.which("ssh"):
        pytest.skip("no ssh client")
    control_dir = Path(tempfile.mkdtemp(prefix="rc-ssh-"))
    with ssh_server(tmp_path / "sshd") as server:
        runner = runner_for(server.host, server.auth(), port=server.port,
                            client=request.param, control_dir=control_dir)
        try:
            yield Node(runner, server.home, "onprem-upd-1", server)
        finally:
            runner.close()
            shutil.rmtree(control_dir, ignore_errors=True)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    app = tmp_path / "app"
    (app / "bin").mkdir(parents=True)
    (app / "settings.ini").write_text("answer=42\n")
    (app / "bin" / "tool").write_text("#!/bin/sh\necho tool ran\n")
    (app / "bin" / "tool").chmod(0o755)
    data = tmp_path / "data.txt"
    data.write_text("data v1\n")
    token = tmp_path / "token"
    token.write_text(TOKEN)
    return {"app": app, "data": data, "token": token}


def make_config(files: dict[str, Path], **overrides: Any) -> ClusterConfig:
    raw: dict[str, Any] = {
        "cluster_name": "upd",
        "provider": {"type": "local"},
        "available_node_types": {"head": {"resources": {"CPU": 0}}, "worker": {}},
        "head_node_type": "head",
        "file_mounts": {"conf/app": str(files["app"]), "data.txt": str(files["data"])},
        "initialization_commands": ["echo init >> order.log"],
        "setup_commands": ["echo setup >> order.log"],
        "worker_setup_commands": ["echo worker-setup $(cat conf/app/settings.ini) >> order.log"],
        "worker_start_ray_commands": [START, "conf/app/bin/tool >> order.log"],
        **overrides,
    }
    return validate_config(raw)


def updater(node: Node, config: ClusterConfig, files: dict[str, Path], tmp_path: Path,
            **options: Any) -> NodeUpdater:
    plan = plan_update(config, node.instance_id, "worker", is_head=False,
                       head_address=HEAD_ADDRESS, token_file=str(files["token"]))
    options.setdefault("retry_delay_s", 0)
    return NodeUpdater(node.runner, plan, log_dir=tmp_path / "logs", ready_timeout_s=10,
                       **options)


def order(node: Node) -> list[str]:
    return (node.dir / "order.log").read_text().splitlines()


def test_update_syncs_mounts_then_runs_commands_in_order_with_the_node_env(
    node: Node, files: dict[str, Path], tmp_path: Path
) -> None:
    result = updater(node, make_config(files), files, tmp_path).update()
    assert result.status is UpdateStatus.RUNNING, result
    assert (result.attempts, result.setup_skipped) == (1, False)
    assert order(node) == ["init", "setup", "worker-setup answer=42", "start", "tool ran"]
    assert (node.dir / "data.txt").read_text() == "data v1\n"
    assert (node.dir / "env.txt").read_text() == f"{HEAD_ADDRESS}|worker|{node.instance_id}\n"
    assert (node.dir / "token.copy").read_text() == TOKEN
    assert (node.dir / ".rayctl" / "token").stat().st_mode & 0o777 == 0o600
    if node.server is not None:
        assert not [c for c in node.server.commands if TOKEN in c]
    log_text = Path(result.log_path).read_text()
    assert "[setup] $ echo setup >> order.log" in log_text and "tool ran" not in log_text


def test_a_failing_setup_command_is_reported_with_its_last_lines(
    node: Node, files: dict[str, Path], tmp_path: Path
) -> None:
    failing = "for i in $(seq 1 30); do echo line$i; done; exit 7"
    config = make_config(files, worker_setup_commands=["echo ok >> order.log", failing])
    result = updater(node, config, files, tmp_path, setup_retries=0).update()
    assert result.status is UpdateStatus.INSTALL_FAILED
    assert (result.stage, result.failed_command, result.exit_code) == (Stage.SETUP, failing, 7)
    assert result.output_tail == tuple(f"line{i}" for i in range(11, 31))
    assert failing in result.message and "exit code 7" in result.message
    assert order(node) == ["init", "setup", "ok"]  # nothing after the failure, no start
    assert not (node.dir / "env.txt").exists()
    assert "line30" in Path(result.log_path).read_text()


def test_a_rerun_skips_unchanged_setup_and_redoes_it_when_a_mount_changes(
    node: Node, files: dict[str, Path], tmp_path: Path
) -> None:
    config = make_config(files)
    assert updater(node, config, files, tmp_path).update().ok
    again = updater(node, config, files, tmp_path).update()
    assert again.ok and again.setup_skipped
    assert order(node)[5:] == ["start", "tool ran"]  # only the start commands ran again
    files["data"].write_text("data v2\n")
    third = updater(node, config, files, tmp_path).update()
    assert third.ok and not third.setup_skipped
    assert order(node)[7:10] == ["init", "setup", "worker-setup answer=42"]
    assert (node.dir / "data.txt").read_text() == "data v2\n"


def test_no_restart_leaves_the_start_commands_out(
    node: Node, files: dict[str, Path], tmp_path: Path
) -> None:
    result = updater(node, make_config(files), files, tmp_path, restart=False).update()
    assert result.ok
    assert order(node) == ["init", "setup", "worker-setup answer=42"]


def test_failed_setup_is_retried_a_bounded_number_of_times(
    node: Node, files: dict[str, Path], tmp_path: Path
) -> None:
    waits: list[float] = []
    config = make_config(files, worker_setup_commands=["echo try >> tries.log; exit 1"])
    result = updater(node, config, files, tmp_path, setup_retries=2, retry_delay_s=3,
                     sleep=waits.append).update()
    assert result.status is UpdateStatus.INSTALL_FAILED and result.attempts == 3
    assert (node.dir / "tries.log").read_text().count("try") == 3
    assert waits == [3, 3]


def test_a_setup_that_succeeds_on_retry_brings_the_node_up(
    node: Node, files: dict[str, Path], tmp_path: Path
) -> None:
    flaky = 'echo try >> tries.log; [ "$(wc -l < tries.log)" -ge 2 ]'
    config = make_config(files, worker_setup_commands=[flaky])
    result = updater(node, config, files, tmp_path, setup_retries=2).update()
    assert result.ok and result.attempts == 2


def test_a_missing_file_mount_source_fails_at_file_mounts(
    node: Node, files: dict[str, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "not-there"
    config = make_config(files, file_mounts={"x": str(missing)})
    result = updater(node, config, files, tmp_path, setup_retries=0).update()
    assert result.status is UpdateStatus.INSTALL_FAILED and result.stage is Stage.FILE_MOUNTS
    assert str(missing) in "\n".join(result.output_tail)


def test_an_unreachable_node_fails_within_the_deadline_naming_host_user_key(
    files: dict[str, Path], tmp_path: Path
) -> None:
    key = tmp_path / "id_test"
    key.write_text("unused")
    port = closed_port()
    runner = runner_for("127.0.0.1", {"ssh_user": "ops", "ssh_private_key": str(key)},
                        port=port, client="asyncssh")
    plan = plan_update(make_config(files), "n1", "worker", is_head=False)
    started = time.monotonic()
    result = NodeUpdater(runner, plan, log_dir=tmp_path / "logs", ready_timeout_s=1).update()
    assert time.monotonic() - started < 5
    assert result.status is UpdateStatus.INSTALL_FAILED and result.stage is Stage.WAIT
    for part in (f"ops@127.0.0.1:{port}", "user 'ops'", str(key), "Fix:"):
        assert part in result.message


# --- decisions --------------------------------------------------------------------------------


def test_plan_merges_head_and_worker_lists_like_ray(files: dict[str, Path]) -> None:
    config = make_config(files, head_setup_commands=["head-only"],
                         head_start_ray_commands=["start-head"])
    head = plan_update(config, "h", "head", is_head=True)
    worker = plan_update(config, "w", "worker", is_head=False)
    assert head.setup_commands == ("echo setup >> order.log", "head-only")
    assert head.start_commands == ("start-head",)
    assert worker.setup_commands[-1].startswith("echo worker-setup")
    assert worker.file_mounts == (("conf/app", str(files["app"])),
                                  ("data.txt", str(files["data"])))


def test_setup_hash_follows_setup_inputs_only() -> None:
    plan = UpdatePlan("i", "worker", False, (("a", "/x"),), ("init",), ("setup",), ("start",))
    base = setup_hash(plan, {"a": "d1"})
    assert setup_hash(plan, {"a": "d1"}) == base
    assert setup_hash(plan, {"a": "d2"}) != base
    assert setup_hash(dataclasses.replace(plan, setup_commands=("other",)), {"a": "d1"}) != base
    unchanged = dataclasses.replace(plan, start_commands=("restart",), token_file="/t",
                                    head_address="h:1", instance_id="j")
    assert setup_hash(unchanged, {"a": "d1"}) == base
    assert not should_run_setup(base + "\n", base)
    assert should_run_setup("", base) and should_run_setup(base, base, force=True)

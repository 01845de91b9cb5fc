"""The local provider: the shared contract, then real processes in slots and the state file."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from provider_contract import CLUSTER, LimitedFactory, ProviderContract, ProviderFactory

from providers.base import InstanceNotFound, Offering, ProviderError
from providers.local import LocalProvider
from providers.local.runner import TIMEOUT_EXIT_CODE

NODE_TYPES: dict[str, dict[str, Any]] = {"head": {}, "worker": {"resources": {"CPU": 1}}}
DEADLINE_S = 10.0

# Writes its own pid file the way the runtime does, then waits to be killed.
PID_FILE_WRITER = """
import json, os, sys, time, psutil
path = sys.argv[1]
os.makedirs(os.path.dirname(path), exist_ok=True)
me = psutil.Process()
with open(path + ".tmp", "w") as f:
    json.dump({"pid": me.pid, "create_time": me.create_time()}, f)
os.replace(path + ".tmp", path)
time.sleep(300)
"""


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[Callable[[str], LocalProvider]]:
    """Providers on a private state root; every slot left is terminated at the end."""
    made: dict[str, LocalProvider] = {}

    def make(name: str = CLUSTER) -> LocalProvider:
        config = {"type": "local", "state_dir": str(tmp_path / "state"), "terminate_grace_s": 2}
        made[name] = LocalProvider(name, config, NODE_TYPES)
        return made[name]

    yield make
    for provider in made.values():
        provider.terminate([i.id for i in provider.list_instances()])


@pytest.fixture
def strays() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts itself; killed at the end whatever happened."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


class TestLocalContract(ProviderContract):
    node_type = "worker"
    expected_offerings = [Offering("local")]

    @pytest.fixture
    def provider_factory(self, factory: Callable[[str], LocalProvider]) -> ProviderFactory:
        return factory

    @pytest.fixture
    def limited_factory(self) -> LimitedFactory:
        return None  # slots never run out


def test_runner_runs_in_the_slot_with_the_node_environment(
    factory: Callable[[str], LocalProvider],
) -> None:
    provider = factory(CLUSTER)
    (instance,) = provider.launch("worker", Offering("local"), 1, "r1")
    slot = provider.slot_dir(instance.id)
    runner = provider.command_runner(instance, node_env={"RAYCTL_TOKEN_FILE": "/t/token"})
    result = runner.run(
        'echo "$PWD|$RAYCTL_NODE_TYPE|$RAYCTL_INSTANCE_ID|$RAYCTL_TEMP_DIR|'
        '$RAYCTL_HEAD_ADDRESS|$RAYCTL_TOKEN_FILE"; echo oops >&2; exit 3',
        env={"RAYCTL_HEAD_ADDRESS": "127.0.0.1:6379"},
    )
    assert result.exit_code == 3
    fields = f"{slot}|worker|{instance.id}|{slot / 'tmp'}|127.0.0.1:6379|/t/token"
    assert result.output == f"{fields}\noops\n"
    assert instance.id == f"local-{CLUSTER}-1"


def test_run_timeout_kills_the_command(factory: Callable[[str], LocalProvider]) -> None:
    provider = factory(CLUSTER)
    (instance,) = provider.launch("worker", Offering("local"), 1, "r1")
    started = time.monotonic()
    result = provider.command_runner(instance).run("echo begun; sleep 30", timeout_s=0.5)
    assert result.exit_code == TIMEOUT_EXIT_CODE
    assert result.output.startswith("begun\n") and "timed out" in result.output
    assert time.monotonic() - started < 5


def test_terminate_kills_background_commands_and_leftover_daemons(
    factory: Callable[[str], LocalProvider],
) -> None:
    provider = factory(CLUSTER)
    (instance,) = provider.launch("worker", Offering("local"), 1, "r1")
    runner = provider.command_runner(instance)
    background = runner.run("exec sleep 300 &")
    assert background.exit_code == 0
    bg_pid = int(background.output.split("pid ")[1].rstrip(")\n"))
    # A foreground command that leaves a daemon behind returns without waiting for it.
    started = time.monotonic()
    daemon = runner.run("sleep 300 > /dev/null 2>&1 & echo $!")
    assert time.monotonic() - started < 5
    daemon_pid = int(daemon.output)
    assert alive(bg_pid) and alive(daemon_pid)
    slot = provider.slot_dir(instance.id)

    provider.terminate([instance.id])
    wait_for(lambda: not alive(bg_pid) and not alive(daemon_pid), "slot processes to die")
    assert not slot.exists()
    assert provider.list_instances() == []


def test_terminate_kills_pid_file_processes_but_never_a_reused_pid(
    factory: Callable[[str], LocalProvider], strays: list[subprocess.Popen[bytes]]
) -> None:
    provider = factory(CLUSTER)
    (instance,) = provider.launch("worker", Offering("local"), 1, "r1")
    pids_dir = provider.slot_dir(instance.id) / "tmp" / "session_1" / "pids"
    # Started outside the runner, as a runtime daemon that re-parented itself would be.
    runtime = subprocess.Popen([sys.executable, "-c", PID_FILE_WRITER, str(pids_dir / "raylet.pid")])
    strays.append(runtime)
    wait_for(lambda: (pids_dir / "raylet.pid").exists(), "the pid file")
    # An unrelated process whose pid sits in a pid file with another start time (a reused pid).
    unrelated = subprocess.Popen(["sleep", "300"], start_new_session=True)
    strays.append(unrelated)
    stale = {"pid": unrelated.pid, "create_time": psutil.Process(unrelated.pid).create_time() - 100}
    (pids_dir / "old-worker.pid").write_text(json.dumps(stale))

    provider.terminate([instance.id])
    wait_for(lambda: runtime.poll() is not None, "the runtime process to die")
    assert unrelated.poll() is None, "terminate killed a process that only reused a pid"


def test_state_survives_a_new_provider_object(factory: Callable[[str], LocalProvider]) -> None:
    monitor = factory(CLUSTER)
    (instance,) = monitor.launch("worker", Offering("local"), 1, "r1", tags={"k": "v"})
    pid = int(monitor.command_runner(instance).run("sleep 300 > /dev/null & echo $!").output)
    # The monitor is gone; `rayctl down` builds its own provider from the same config.
    down = factory(CLUSTER)
    (listed,) = down.list_instances()
    assert (listed.id, listed.node_type, listed.tags["k"]) == (instance.id, "worker", "v")
    assert listed.launched_at == instance.launched_at
    state = json.loads((down.cluster_dir / "state.json").read_text())
    (slot,) = state["slots"]
    assert slot["processes"][0]["create_time"] > 0
    down.terminate([instance.id])
    wait_for(lambda: not alive(pid), "the process started by the old provider object to die")
    assert monitor.list_instances() == []


def test_a_slot_whose_processes_died_is_listed_until_terminated(
    factory: Callable[[str], LocalProvider],
) -> None:
    provider = factory(CLUSTER)
    (instance,) = provider.launch("worker", Offering("local"), 1, "r1")
    provider.command_runner(instance).run("true")
    assert [i.id for i in provider.list_instances()] == [instance.id]


def test_runner_of_a_terminated_slot_refuses_to_run(
    factory: Callable[[str], LocalProvider],
) -> None:
    provider = factory(CLUSTER)
    (instance,) = provider.launch("worker", Offering("local"), 1, "r1")
    runner = provider.command_runner(instance)
    provider.terminate([instance.id])
    with pytest.raises(InstanceNotFound, match="terminated"):
        runner.run("echo hi")


def test_put_file_copies_into_the_slot(
    factory: Callable[[str], LocalProvider], tmp_path: Path
) -> None:
    provider = factory(CLUSTER)
    (instance,) = provider.launch("worker", Offering("local"), 1, "r1")
    source = tmp_path / "cluster.yaml"
    source.write_text("cluster_name: x\n")
    runner = provider.command_runner(instance)
    runner.put_file(str(source), "conf/rayctl_cluster.yaml")
    assert runner.run("cat conf/rayctl_cluster.yaml").output == "cluster_name: x\n"


def test_concurrent_launches_get_distinct_slots(factory: Callable[[str], LocalProvider]) -> None:
    provider = factory(CLUSTER)
    results: list[list[str]] = []

    def launch(n: int) -> None:
        other = factory(CLUSTER)  # separate objects: only the file lock orders them
        results.append([i.id for i in other.launch("worker", Offering("local"), 2, f"r{n}")])

    threads = [threading.Thread(target=launch, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for batch in results for i in batch]
    assert len(set(ids)) == 8
    assert {i.id for i in provider.list_instances()} == set(ids)


def test_state_dir_comes_from_the_environment_when_not_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAYCTL_LOCAL_STATE_DIR", str(tmp_path / "env-root"))
    provider = LocalProvider("envcluster", {"type": "local"}, NODE_TYPES)
    resolved = provider.bootstrap()
    assert provider.cluster_dir == tmp_path / "env-root" / "envcluster"
    assert resolved["state_dir"] == str(tmp_path / "env-root")
    assert (provider.cluster_dir / "nodes").is_dir()


def test_purge_refuses_while_slots_exist_then_removes_the_state(
    factory: Callable[[str], LocalProvider],
) -> None:
    provider = factory(CLUSTER)
    provider.bootstrap()
    (instance,) = provider.launch("worker", Offering("local"), 1, "r1")
    with pytest.raises(ProviderError, match="still exist"):
        provider.purge()
    provider.terminate([instance.id])
    provider.purge()
    assert not provider.cluster_dir.exists()


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    config = {"type": "local", "state_dir": str(tmp_path), "terminate_grace_s": 0.3}
    provider = LocalProvider(CLUSTER, config, NODE_TYPES)
    (instance,) = provider.launch("worker", Offering("local"), 1, "r1")
    try:
        runner = provider.command_runner(instance)
        stubborn = "trap '' TERM; echo ready > ready; while true; do sleep 0.05; done"
        pid = runner.start_background(stubborn)
        ready = provider.slot_dir(instance.id) / "ready"
        wait_for(ready.exists, "the trap to be installed")
        started = time.monotonic()
        provider.terminate([instance.id])
        assert not alive(pid)
        assert 0.3 <= time.monotonic() - started < 5
    finally:
        provider.terminate([instance.id])

"""The GCP provider end to end: `rayctl up` of cluster-configs/gcp.yaml against the fake Compute
REST server, a driver's tasks scaling spot workers up, a preempted worker replaced while demand
remains, and `rayctl down` leaving nothing in the fake.

Fake instances never boot, so the config sets the provider's test-only `command_runner: local`:
each instance's commands run on this machine in `<root>/nodes/<instance name>/` (own
RAYCTL_TEMP_DIR), the head's monitor included. The fake runs in this process on 127.0.0.1 and is
reached by the CLI (in-process) and the monitor (a subprocess) through `_api_endpoint`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from gcp_fake import FakeCompute
from polling import wait_for
from typer.testing import CliRunner, Result

from autoscaler.cli import app
from autoscaler.launcher.remote import status_on_head
from autoscaler.launcher.up import load_cluster
from providers.base import (
    NODE_KIND_HEAD,
    NODE_KIND_WORKER,
    TAG_CLUSTER,
    TAG_LAUNCH_HASH,
    TAG_NODE_KIND,
    TAG_NODE_TYPE,
    ConfigError,
)
from providers.gcp import GCPProvider
from providers.gcp.labels import label_key, label_value

NAME = "gcp-e2e"
HEAD_TYPE, WORKER_TYPE = "head", "cpu_worker"
GCP_YAML = Path(__file__).resolve().parent.parent / "cluster-configs" / "gcp.yaml"
TASKS = 3  # one more than max_workers: a task stays queued, so demand remains


def make_config(root: Path, endpoint: str) -> dict[str, Any]:
    """cluster-configs/gcp.yaml, made small and fast, pointed at the fake and the local runner."""
    raw: dict[str, Any] = yaml.safe_load(GCP_YAML.read_text())
    raw.pop("auth")  # no SSH: the nodes are local processes (and the key file does not exist)
    raw.update(cluster_name=NAME, max_workers=2, setup_commands=["true"])
    raw["provider"].update(
        project_id="rayctl-e2e",
        ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e test@laptop",
        _api_endpoint=endpoint,
        command_runner="local",  # test-only: see providers/gcp/provider.py
        local_runner_dir=str(root / "nodes"),
    )
    worker = raw["available_node_types"][WORKER_TYPE]
    worker.update(resources={"CPU": 1}, min_workers=0, max_workers=2, idle_timeout_s=3)
    worker["node_config"]["scheduling"] = {"provisioningModel": "SPOT"}  # preemptible
    return raw


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@dataclass
class Cluster:
    root: Path
    config_file: Path
    fake: FakeCompute

    def labelled(self) -> dict[str, dict[str, str]]:
        """name -> labels of every instance the fake holds, preempted ones included."""
        with self.fake.state.lock:
            self.fake.state.tick()
            return {name: dict(i.body.get("labels", {}))
                    for (_, name), i in self.fake.state.instances.items()}

    def workers(self) -> set[str]:
        kind = label_key(TAG_NODE_KIND)
        return {n for n, labels in self.labelled().items() if labels.get(kind) == NODE_KIND_WORKER}

    def status(self) -> dict[str, Any] | None:
        """`rayctl status --json` as run on the head (None until the monitor has published)."""
        ran = status_on_head(load_cluster(str(self.config_file)), as_json=True, verbose=False)
        if ran.exit_code != 0:
            return None
        data: dict[str, Any] = json.loads(ran.output[ran.output.index("{"):])
        return data

    def head_record(self) -> dict[str, str]:
        path = self.root / "home" / ".rayctl" / "clusters" / NAME / "head.json"
        data: dict[str, str] = json.loads(path.read_text())
        return data


def stop_local_nodes(root: Path) -> None:
    """Every session of every simulated instance, then any process still started with a
    RAYCTL_TEMP_DIR under `root`. The GCP provider's terminate only deletes fake instances:
    the processes of a preempted or terminated instance keep running until here, which is
    expected in this simulation (a real VM's end would take them along)."""
    from runtime.session import all_sessions, stop_session

    for tmp in root.glob("nodes/*/tmp"):
        for session in all_sessions(str(tmp)):
            stop_session(session, grace_s=2)
    left = []
    for proc in psutil.process_iter():
        try:
            if str(root) in proc.environ().get("RAYCTL_TEMP_DIR", ""):
                proc.kill()
                left.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    psutil.wait_procs(left, timeout=5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("gcp-e2e")
    config_file = root / "cluster.yaml"
    bin_dir = os.path.dirname(sys.executable)
    with FakeCompute() as fake, pytest.MonkeyPatch.context() as env:
        config_file.write_text(yaml.safe_dump(make_config(root, fake.endpoint)))
        env.setenv("HOME", str(root / "home"))
        env.setenv("RAYCTL_TEMP_DIR", str(root / "rayctl-tmp"))
        # A GCP node runs `rayctl` from PATH; here that must be this venv's.
        env.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        env.delenv("RAYCTL_ADDRESS", raising=False)
        env.delenv("RAYCTL_TOKEN_FILE", raising=False)
        try:
            yield Cluster(root, config_file, fake)
        finally:
            try:
                invoke("down", str(config_file), "-y")
            finally:
                stop_local_nodes(root)


def start_driver(cluster: Cluster, release: Path) -> subprocess.Popen[str]:
    """TASKS one-CPU tasks that each hold their worker until `release` exists (each says where
    it started with a `release.started-on-<node>` file)."""
    record = cluster.head_record()
    script = (
        "import os, time, runtime as rt\n"
        f"rt.init(address={record['address']!r})\n"
        "@rt.remote(num_cpus=1)\n"
        "def hold(path):\n"
        "    node = rt.get_runtime_context().get_node_id()\n"
        "    open(f'{path}.started-on-{node}', 'w').close()\n"
        "    while not os.path.exists(path): time.sleep(0.1)\n"
        "    return node\n"
        f"refs = [hold.remote({str(release)!r}) for _ in range({TASKS})]\n"
        "print(len(rt.get(refs, timeout=120)), len(set(rt.get(refs))))\n"
    )
    env = {**os.environ, "RAYCTL_TOKEN_FILE": record["token_file"]}
    return subprocess.Popen([sys.executable, "-c", script], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def driving(driver: subprocess.Popen[str]) -> bool:
    """True while the driver runs; its output in the failure once it exited early."""
    if driver.poll() is None:
        return True
    out = driver.stdout.read() if driver.stdout else ""
    raise AssertionError(f"the driver exited early ({driver.returncode}):\n{out}")


def running_workers(status: dict[str, Any] | None) -> list[str]:
    """Cloud names of the workers whose lifecycle is RAYLET_RUNNING."""
    if status is None:
        return []
    return [i["cloud_instance_id"] for i in status["instances"]
            if i["node_type"] == WORKER_TYPE and i["history"][-1][0] == "RAYLET_RUNNING"]


def history_of(status: dict[str, Any] | None, cloud_id: str) -> list[list[Any]]:
    for instance in (status or {}).get("instances", []):
        if instance["cloud_instance_id"] == cloud_id:
            return list(instance["history"])
    return []


def test_up_scale_preempt_replace_down(cluster: Cluster) -> None:
    up = invoke("up", str(cluster.config_file), "-y")
    assert up.exit_code == 0, up.output

    # The head exists in the fake with the cluster's labels.
    [(head, labels)] = list(cluster.labelled().items())
    assert cluster.head_record()["instance_id"] == head
    assert labels[label_key(TAG_CLUSTER)] == label_value(NAME)
    assert labels[label_key(TAG_NODE_KIND)] == NODE_KIND_HEAD
    assert labels[label_key(TAG_NODE_TYPE)] == label_value(HEAD_TYPE)
    assert labels[label_key(TAG_LAUNCH_HASH)]
    assert labels["team"] == "research"  # the config's own labels ride along

    # Demand: the autoscaler launches spot workers in the fake, which install and register.
    release = cluster.root / "release"
    driver = start_driver(cluster, release)
    try:
        first = wait_for(lambda: driving(driver) and _two(running_workers(cluster.status())),
                         60, "two RAYLET_RUNNING workers")
        assert set(first) == cluster.workers()

        # Preemption: the provider stops listing it; with a task still queued, it is replaced.
        # Only the fake instance goes: its local raylet (and the task it holds) runs on until
        # stop_local_nodes, as expected in this simulation.
        victim = first[0]
        cluster.fake.state.preempt(victim)
        replacement = wait_for(lambda: driving(driver) and cluster.workers() - set(first), 30,
                               "a replacement worker in the fake")
        history = wait_for(lambda: _terminated(history_of(cluster.status(), victim)), 30,
                           "the preempted worker's record to say why it ended")
        assert "preempted" in history[-1][2]
        assert [h[0] for h in history][-2:] == ["RAYLET_RUNNING", "TERMINATED"]
        wait_for(lambda: driving(driver) and set(running_workers(cluster.status())) >= replacement,
                 60, "the replacement to run")

        # The queued task starts on the replacement (released before that, it could run on a
        # worker that a finished task handed back), then all finish.
        wait_for(lambda: driving(driver) and len(list(cluster.root.glob("release.started-on-*")))
                 == TASKS, 30, "the queued task to start on the replacement")
        release.write_text("go")
        out, _ = driver.communicate(timeout=60)
        assert driver.returncode == 0, out
        result = [line for line in out.strip().splitlines() if line.replace(" ", "").isdigit()]
        done, nodes = map(int, result[-1].split())  # the driver's result line, whatever else it printed
        assert done == TASKS and nodes == TASKS  # one node each: first two, then the replacement
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()

    down = invoke("down", str(cluster.config_file), "-y")
    assert down.exit_code == 0, down.output
    # Only the preempted VM is left, TERMINATED: GCE deletes it by itself (spot DELETE action).
    assert list(cluster.labelled()) == [victim]
    with cluster.fake.state.lock:
        assert [i.status for i in cluster.fake.state.instances.values()] == ["TERMINATED"]


def _two(names: list[str]) -> list[str] | None:
    return sorted(names) if len(names) == 2 else None


def _terminated(history: list[list[Any]]) -> list[list[Any]] | None:
    return history if history and history[-1][0] == "TERMINATED" else None


def test_local_runner_needs_an_absolute_dir() -> None:
    config = {"type": "gcp", "project_id": "p", "region": "us-central1",
              "availability_zone": "us-central1-a", "command_runner": "local"}
    with pytest.raises(ConfigError, match="local_runner_dir"):
        GCPProvider("c", config, {})
    with pytest.raises(ConfigError, match="absolute"):
        GCPProvider("c", {**config, "local_runner_dir": "relative/dir"}, {})

"""The GCP provider end to end: `rayctl up` of cluster-configs/gcp.yaml against the fake Compute
REST server, a driver's tasks scaling spot workers up, a preempted worker replaced while demand
remains, and `rayctl down` leaving nothing in the fake.

Fake instances never boot, so the config's provider is the test plug-in `LocalGCPProvider`
(tests/plugins/local_clouds.py: the shipped GCP provider, each instance's commands run on this
machine in `<root>/nodes/<instance name>/` with its own RAYCTL_TEMP_DIR), the head's monitor
included, which loads the plug-in through PYTHONPATH. The fake runs in this process on
127.0.0.1 and is reached by the CLI (in-process) and the monitor (a subprocess) through the
plug-in's `api_endpoint`. A preempted or deleted instance's processes end with it.
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
from plugins.local_clouds import LocalGCPProvider, external_section
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
from providers.gcp.labels import label_key, label_value

NAME = "gcp-e2e"
HEAD_TYPE, WORKER_TYPE = "head", "cpu_worker"
TESTS = Path(__file__).resolve().parent
GCP_YAML = TESTS.parent / "cluster-configs" / "gcp.yaml"
TASKS = 3  # one more than max_workers: a task stays queued, so demand remains


def make_config(root: Path, endpoint: str) -> dict[str, Any]:
    """cluster-configs/gcp.yaml, made small and fast, its provider the plug-in pointed at the
    fake, with instances in `root/nodes/`."""
    raw: dict[str, Any] = yaml.safe_load(GCP_YAML.read_text())
    raw.pop("auth")  # no SSH: the nodes are local processes (and the key file does not exist)
    raw.update(cluster_name=NAME, max_workers=2, setup_commands=["true"])
    section = {k: v for k, v in raw["provider"].items() if k != "type"}
    section.update(
        project_id="rayctl-e2e",
        ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e test@laptop",
        api_endpoint=endpoint,
        nodes_dir=str(root / "nodes"),
    )
    raw["provider"] = external_section(LocalGCPProvider, **section)
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


def node_processes(where: Path) -> list[psutil.Process]:
    """Live processes started with a RAYCTL_TEMP_DIR under `where` (a node's commands, its
    raylet and the workers the raylet forked)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("RAYCTL_TEMP_DIR", "").startswith(str(where)) and \
                    proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def stop_local_nodes(root: Path) -> None:
    """The cleanup after a failure: every session of every simulated instance, then any
    process still started with a RAYCTL_TEMP_DIR under `root`. (A passing test leaves none:
    the plug-in stops an instance's processes when it is deleted or preempted.)"""
    from runtime.session import all_sessions, stop_session

    for tmp in root.glob("nodes/*/tmp"):
        for session in all_sessions(str(tmp)):
            stop_session(session, grace_s=2)
    left = node_processes(root)
    for proc in left:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
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
        # The head's monitor, a process of its own, loads the plug-in from tests/.
        env.setenv("PYTHONPATH", os.pathsep.join(
            p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p))
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
    """TASKS one-CPU tasks that each hold their worker until `release` exists (each says on
    which instance it started with a `release.started-on-<instance>` file); the driver prints
    the instances they finished on, as JSON."""
    record = cluster.head_record()
    script = (
        "import json, os, time, runtime as rt\n"
        f"rt.init(address={record['address']!r})\n"
        "@rt.remote(num_cpus=1)\n"
        "def hold(path):\n"
        "    instance = os.environ['RAYCTL_INSTANCE_ID']\n"
        "    open(f'{path}.started-on-{instance}', 'w').close()\n"
        "    while not os.path.exists(path): time.sleep(0.1)\n"
        "    return instance\n"
        f"refs = [hold.remote({str(release)!r}) for _ in range({TASKS})]\n"
        "print(json.dumps(rt.get(refs, timeout=120)))\n"
    )
    from runtime.auth import read_credentials

    # a cloud's default head start command turns TLS on: the whole cluster runs under it
    assert read_credentials(record["token_file"]).tls is not None
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

        # Preemption: the provider stops listing it, and the VM's end takes its processes
        # along (the raylet and the task it held: the driver retries that task). With tasks
        # still queued, the worker is replaced.
        victim = first[0]
        cluster.fake.state.preempt(victim)
        wait_for(lambda: driving(driver) and not node_processes(cluster.root / "nodes" / victim),
                 30, "the preempted worker's processes to end")
        replacement = wait_for(lambda: driving(driver) and cluster.workers() - set(first), 30,
                               "a replacement worker in the fake")
        history = wait_for(lambda: _terminated(history_of(cluster.status(), victim)), 30,
                           "the preempted worker's record to say why it ended")
        assert "preempted" in history[-1][2]
        assert [h[0] for h in history][-2:] == ["RAYLET_RUNNING", "TERMINATED"]
        wait_for(lambda: driving(driver) and set(running_workers(cluster.status())) >= replacement,
                 60, "the replacement to run")

        # A waiting task (the queued one or the retried one) starts on the replacement
        # (released before that, it could run on a worker that a finished task handed back),
        # then all finish, none on the preempted worker.
        wait_for(lambda: driving(driver) and replacement & started_on(cluster.root), 30,
                 "a task to start on the replacement")
        release.write_text("go")
        out, _ = driver.communicate(timeout=60)
        assert driver.returncode == 0, out
        finished_on = json.loads(out.strip().splitlines()[-1])  # the driver's last line
        assert len(finished_on) == TASKS
        assert victim not in finished_on and replacement & set(finished_on)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()

    down = invoke("down", str(cluster.config_file), "-y")
    assert down.exit_code == 0, down.output
    assert node_processes(cluster.root / "nodes") == []  # deleted VMs took their processes
    # Only the preempted VM is left, TERMINATED: GCE deletes it by itself (spot DELETE action).
    assert list(cluster.labelled()) == [victim]
    with cluster.fake.state.lock:
        assert [i.status for i in cluster.fake.state.instances.values()] == ["TERMINATED"]


def started_on(root: Path) -> set[str]:
    return {p.name.removeprefix("release.started-on-") for p in root.glob("release.started-on-*")}


def _two(names: list[str]) -> list[str] | None:
    return sorted(names) if len(names) == 2 else None


def _terminated(history: list[list[Any]]) -> list[list[Any]] | None:
    return history if history and history[-1][0] == "TERMINATED" else None


def test_the_plugin_needs_an_absolute_nodes_dir() -> None:
    config = {"project_id": "p", "region": "us-central1", "availability_zone": "us-central1-a",
              "api_endpoint": "http://127.0.0.1:1"}
    with pytest.raises(ConfigError, match="nodes_dir"):
        LocalGCPProvider("c", config, {})
    with pytest.raises(ConfigError, match="absolute"):
        LocalGCPProvider("c", {**config, "nodes_dir": "relative/dir"}, {})

"""A whole rayctl cluster on "AWS" for the end-to-end test: moto served over HTTP on 127.0.0.1 (the
CLI, the head's monitor and the test all talk to it), a test config derived from
cluster-configs/aws.yaml whose provider is the plug-in tests/plugins/local_clouds.py
`LocalAWSProvider` (the shipped AWS provider, instances run locally), the environment every
process gets (PYTHONPATH lets each of them import the plug-in), and a cleanup that stops every
process the cluster started.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml
from aws_fakes import AMI, REGION

from providers.base import TAG_CLUSTER

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
AWS_YAML = REPO / "cluster-configs" / "aws.yaml"
HEAD_TYPE = "ray.head.default"
WORKER_TYPE = "ray.worker.default"
WORKER_INSTANCE_TYPE = "m5.xlarge"  # the first type the worker lists: moto never runs out
LIVE = ["pending", "running", "stopping", "stopped"]

# tests/ holds the shared test modules (polling, provider_contract, plugins); pytest puts it on
# the path only when it collects tests/ too.
if str(TESTS) not in sys.path:
    sys.path.append(str(TESTS))

from plugins.local_clouds import LocalAWSProvider, external_section  # noqa: E402
from plugins.local_nodes import LocalNodes  # noqa: E402


def cluster_config(
    root: Path, cluster_name: str, max_workers: int, idle_timeout_s: float
) -> dict[str, Any]:
    """cluster-configs/aws.yaml, shrunk for a test: a CPU-less head, one-CPU workers, trivial
    setup, moto's AMI, keys under `root`, and every instance simulated in `root/nodes/` by the
    LocalAWSProvider plug-in."""
    config: dict[str, Any] = yaml.safe_load(AWS_YAML.read_text())
    config["cluster_name"] = cluster_name
    config["max_workers"] = max_workers
    section = {k: v for k, v in config["provider"].items() if k != "type"}
    section.update(region=REGION, key_dir=str(root / "keys"), nodes_dir=str(root / "nodes"))
    config["provider"] = external_section(LocalAWSProvider, **section)
    types = config["available_node_types"]
    assert set(types) == {HEAD_TYPE, WORKER_TYPE}, "aws.yaml's node types changed: update me"
    types[HEAD_TYPE]["resources"] = {"CPU": 0}  # tasks must need workers
    types[WORKER_TYPE].update(
        resources={"CPU": 1}, max_workers=max_workers, idle_timeout_s=idle_timeout_s
    )
    for spec in types.values():
        spec["node_config"]["ImageId"] = AMI  # moto has no Ubuntu image to look up
    config["setup_commands"] = ["true"]
    return config


def process_env(root: Path, endpoint: str) -> dict[str, str]:
    """What every process of the test gets: moto's endpoint, fake credentials that can reach
    nothing else, a private HOME (launcher records, keys) and this venv's `rayctl` first."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "RAYCTL_"))}  # no real profile, no outer cluster
    bin_dir = os.path.dirname(sys.executable)
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(root / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(root / "no-aws-credentials"),
        HOME=str(root / "home"),
        RAYCTL_TEMP_DIR=str(root / "rayctl-tmp"),
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]),  # the plug-in, in every process
    )
    return env


@contextmanager
def moto_server() -> Iterator[str]:
    """moto over HTTP on an ephemeral loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class AwsCluster:
    root: Path
    config_file: Path
    name: str
    env: dict[str, str]

    def rayctl(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """The CLI as a user runs it: its own process, seeing moto only through the env."""
        return subprocess.run(
            [sys.executable, "-m", "autoscaler.cli", *args], env=self.env, cwd=self.root,
            capture_output=True, text=True, timeout=timeout_s,
        )

    def client(self, service: str) -> Any:
        import boto3

        return boto3.session.Session().client(
            service, region_name=REGION, endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )

    def instances(self, states: list[str] | None = None) -> list[dict[str, Any]]:
        """This cluster's instances as EC2 describes them (all states unless given)."""
        filters = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [self.name]}]
        if states:
            filters.append({"Name": "instance-state-name", "Values": states})
        pages = self.client("ec2").get_paginator("describe_instances").paginate(Filters=filters)
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def node_dirs(self) -> list[Path]:
        nodes = self.root / "nodes"
        return sorted(p for p in nodes.iterdir() if p.is_dir()) if nodes.is_dir() else []

    def pids(self, under: Path | None = None) -> set[int]:
        """Live processes of the cluster (or of one node directory): in a node's session, or
        started with a RAYCTL_TEMP_DIR there (the runner's commands, raylet-forked workers)."""
        from runtime.session import all_sessions, session_processes

        nodes = [under] if under is not None else self.node_dirs()
        pids = {p.pid for d in nodes for s in all_sessions(str(d / "tmp"))
                for p in session_processes(s)}
        prefix = str(under or self.root)
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("RAYCTL_TEMP_DIR", "").startswith(prefix):
                    pids.add(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return {p for p in pids if _alive(p)}

    def shm_dirs(self) -> list[Path]:
        """Shared-memory dirs the nodes' sessions created that still exist."""
        listed = [Path(line.strip()) for f in self.root.glob("nodes/*/tmp/session_*/shm_dirs")
                  for line in f.read_text().splitlines() if line.strip()]
        return [p for p in listed if p.exists()]

    def stop_everything(self) -> None:
        """Cleanup, also after a failure: every node's sessions, then whatever its commands
        left (the plug-in's own stopper), then any straggler found by its environment."""
        from runtime.session import all_sessions, stop_session

        for node in self.node_dirs():
            for session in all_sessions(str(node / "tmp")):
                stop_session(session, grace_s=2)
        LocalNodes(self.root / "nodes", self.name).stop(p.name for p in self.node_dirs())
        for pid in self.pids():
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                continue


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

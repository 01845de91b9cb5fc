"""The launcher on on-prem hosts end to end: three SSH "hosts" (in-process asyncssh servers on
distinct loopback ports, each with its own home and RAYCTL_TEMP_DIR). `rayctl up` starts the head
on one (a second `up` changes nothing); a driver's one-CPU tasks make the head's monitor claim a
worker host and start a raylet there over SSH; `rayctl down` releases every host and leaves no
process, also with the head dead.

Two edges are stubbed, both about installing rayctl on a host, which these hosts (this machine,
this venv) already have: the wheel `up` builds, and `pip install` of it on the hosts.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml
from launcher_stubs import fake_wheel, install_python_shim, invoke
from polling import wait_for
from ssh_server import SSHServer, ssh_server

from autoscaler.launcher import ship as launcher_ship
from autoscaler.launcher.head import load_record
from providers.base import Instance
from providers.onprem import TAG_HOST, OnPremProvider

NAME = "rack"
NODE_TYPES: dict[str, dict[str, object]] = {"head": {}, "worker": {}}



@dataclass
class Rack:
    root: Path
    config_file: Path
    head: SSHServer
    workers: list[SSHServer]

    @property
    def hosts(self) -> list[SSHServer]:
        return [self.head, *self.workers]

    def provider(self) -> OnPremProvider:
        """A provider object of our own over the same claims file the CLI and monitor use."""
        return OnPremProvider(NAME, {"head_ip": "127.0.0.1", "state_dir": str(self.root / "state")},
                              NODE_TYPES)

    def host_of(self, instance: Instance) -> SSHServer:
        port = int(instance.tags[TAG_HOST].rsplit(":", 1)[1])
        return next(h for h in self.hosts if h.port == port)


def temp_dir(host: SSHServer) -> Path:
    return host.home.parent / "rayctl-tmp"


def host_pids(root: Path) -> set[int]:
    """Live processes started for any host under `root` (their RAYCTL_TEMP_DIR is there)."""
    pids = set()
    for proc in psutil.process_iter():
        try:
            if str(root) in proc.environ().get("RAYCTL_TEMP_DIR", "") and (
                proc.status() != psutil.STATUS_ZOMBIE
            ):
                pids.add(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return pids


def raylet_running(host: SSHServer) -> bool:
    return any("raylet" in " ".join(_cmdline(p)) for p in host_pids(host.home.parent))


def raylet_nodes(host: SSHServer) -> set[str]:
    """Node ids of the raylets a host's sessions recorded."""
    pids = temp_dir(host).glob("session_*/pids/raylet-*.pid")
    return {p.stem.removeprefix("raylet-") for p in pids}


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            continue




@pytest.fixture
def rack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rack]:
    """Three hosts and a config naming them; at exit `down`, then every claim and process of
    the hosts is removed whatever happened."""
    shim = install_python_shim(tmp_path / "shim")
    path = f"{shim}:{Path(sys.executable).parent}:$PATH"
    monkeypatch.setenv("HOME", str(tmp_path / "client-home"))
    for name in ("RAYCTL_ADDRESS", "RAYCTL_TOKEN_FILE", "RAYCTL_HEAD_ADDRESS", "RAYCTL_TEMP_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(launcher_ship, "build_wheel", fake_wheel)
    with ExitStack() as stack:
        hosts: list[SSHServer] = []
        for name in ("head", "w1", "w2"):
            key = hosts[0].key_path if hosts else None
            host = stack.enter_context(ssh_server(tmp_path / name, key=key))
            # What a user's ~/.profile on the host would say (the runners use login shells).
            (host.home / ".profile").write_text(
                f"export PATH={path}\nexport RAYCTL_TEMP_DIR={temp_dir(host)}\n"
            )
            hosts.append(host)
        head, *workers = hosts
        config_file = tmp_path / "cluster.yaml"
        config_file.write_text(yaml.safe_dump({
            "cluster_name": NAME,
            "max_workers": 2,
            "provider": {
                "type": "onprem",
                "head_ip": f"127.0.0.1:{head.port}",
                "worker_ips": [f"127.0.0.1:{w.port}" for w in workers],
                "ssh_client": "asyncssh",  # no OpenSSH master processes outliving the test
                "state_dir": str(tmp_path / "state"),
                "stop_timeout_s": 30,
            },
            "auth": head.auth(),
            "head_node_type": "head",
            "available_node_types": {
                "head": {"resources": {"CPU": 0}},
                "worker": {"resources": {"CPU": 1}, "max_workers": 2},
            },
        }))
        rack = Rack(tmp_path, config_file, head, workers)
        try:
            yield rack
        finally:
            invoke("down", str(config_file), "-y")
            provider = rack.provider()
            provider.terminate([i.id for i in provider.list_instances()])
            kill_all(host_pids(tmp_path))


def run_driver(address: str, token_file: str, tasks: int) -> str:
    script = textwrap.dedent(f"""\
        import runtime as rt
        rt.init(address={address!r})
        @rt.remote(num_cpus=1)
        def where():
            return rt.get_runtime_context().get_node_id()
        print(sorted(set(rt.get([where.remote() for _ in range({tasks})], timeout=60))))
    """)
    env = {**os.environ, "RAYCTL_TOKEN_FILE": token_file}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_up_demand_scales_onto_a_worker_host_and_down_releases_all(rack: Rack) -> None:
    up = invoke("up", str(rack.config_file), "-y")
    assert up.exit_code == 0, up.output
    record = load_record(NAME)
    assert record is not None and record.provider_type == "onprem"
    assert raylet_running(rack.head)
    assert not any(host_pids(w.home.parent) for w in rack.workers)  # no demand yet
    assert "rayctl start --head" in " ".join(rack.head.commands)
    again = invoke("up", str(rack.config_file), "-y")
    assert again.exit_code == 0 and "nothing changed" in again.output, again.output
    assert load_record(NAME) == record

    ran_on = set(ast.literal_eval(run_driver(record.address, record.token_file, tasks=2)))
    workers = [i for i in rack.provider().list_instances() if not i.is_head]
    assert workers, "the monitor claimed no worker host"
    claimed = [rack.host_of(i) for i in workers]
    assert all(h is not rack.head for h in claimed)
    assert all(raylet_running(h) for h in claimed)
    assert ran_on and ran_on <= {n for h in claimed for n in raylet_nodes(h)}
    assert any("rayctl start --address" in c for h in claimed for c in h.commands)

    down = invoke("down", str(rack.config_file), "-y")
    assert down.exit_code == 0, down.output
    assert all(i.id in down.output for i in workers)
    assert rack.provider().list_instances() == []
    wait_for(lambda: not host_pids(rack.root), 15, "no process left on any host")
    assert load_record(NAME) is None


def test_down_with_the_head_dead_still_removes_the_workers(rack: Rack) -> None:
    up = invoke("up", str(rack.config_file), "-y", "--min-workers", "1")
    assert up.exit_code == 0, up.output
    worker = wait_for(
        lambda: [i for i in rack.provider().list_instances() if not i.is_head], 30,
        "the monitor to claim a worker host for min_workers",
    )[0]
    host = rack.host_of(worker)
    wait_for(lambda: raylet_running(host), 30, "a raylet on the claimed worker host")

    kill_all(host_pids(rack.head.home.parent))  # the head machine's services die
    wait_for(lambda: not host_pids(rack.head.home.parent), 10, "the head's processes to die")

    down = invoke("down", str(rack.config_file), "-y")
    assert down.exit_code == 0, down.output
    assert worker.id in down.output
    assert rack.provider().list_instances() == []
    wait_for(lambda: not host_pids(rack.root), 15, "no process left on any host")

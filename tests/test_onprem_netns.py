"""The launcher on on-prem hosts that are separate network stacks: three Linux network namespaces
(head, w1, w2) on a private bridge in 10.251.X.0/24, each running an SSH server process on its
own address, port 22. `rayctl up` (from the root namespace, over the bridge) starts the head; a
driver submitted to the head makes its monitor claim worker hosts, whose raylets must bind and
advertise their own host's address (127.0.0.1 would be unreachable) for the tasks to run there
and their objects to reach the head; a driver started on a worker host joins that host's raylet;
`rayctl down` releases every host and leaves no process in any namespace.

Needs root and a working `ip netns` (skipped otherwise). The wheel `up` builds and `pip install`
of it on the hosts are stubbed, as in tests/test_onprem_end_to_end.py: the hosts share this venv.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import psutil
import pytest
import yaml
from launcher_stubs import fake_wheel, install_python_shim, invoke
from polling import wait_for
from ssh_host import COMMANDS_FILE, READY_FILE
from ssh_server import USER

from autoscaler.launcher import ship as launcher_ship
from autoscaler.launcher.head import load_record
from autoscaler.launcher.updater import node_ip_address
from providers.base import CommandRunner, Instance, Offering, ProviderState
from providers.onprem import TAG_HOST, OnPremProvider

NAME = "netrack"
TESTS = Path(__file__).parent
TAG = os.getpid() % 10000  # in every interface and namespace name: parallel runs do not clash
HOST_NAMES = ("head", "w1", "w2")
NODE_TYPES: dict[str, dict[str, object]] = {"head": {}, "worker": {}}


# Where each one-CPU task ran, the driver's own node, and each node's address and instance.
DRIVER = textwrap.dedent("""\
    import json, os
    import runtime as rt
    rt.init()
    @rt.remote(num_cpus=1)
    def where():
        return rt.get_runtime_context().get_node_id(), os.getpid()
    @rt.remote(num_cpus=1)
    def blob():  # too big to travel inline: the driver's raylet pulls it from the producer's
        return rt.get_runtime_context().get_node_id(), b"x" * (4 << 20)
    ran = rt.get([where.remote() for _ in range(2)], timeout=60)
    made_on, data = rt.get(blob.remote(), timeout=60)
    assert data == b"x" * (4 << 20)
    nodes = {n["NodeID"]: [n["NodeManagerAddress"], n["InstanceID"]] for n in rt.nodes()}
    driver = rt.get_runtime_context().get_node_id()
    print(json.dumps({"ran": ran, "made_on": made_on, "nodes": nodes, "driver": driver}))
""")


# --- the network ------------------------------------------------------------------------------


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


def ip_quiet(*args: str) -> None:
    """Teardown: the thing may be gone already."""
    subprocess.run(["ip", *args], capture_output=True, timeout=30)


def netns_pids(netns: str) -> set[int]:
    """Live processes in the namespace (a zombie has left it: its /proc/PID/ns is gone)."""
    done = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True,
                          timeout=30)
    return {int(p) for p in done.stdout.split()}


def unusable_reason() -> str | None:
    """Why this machine cannot run the test, or None."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip`"
    probe = f"rcprobe{TAG}"
    try:
        ip("netns", "add", probe)
    except RuntimeError as exc:
        return f"`ip netns` is not usable here: {exc}"
    ip_quiet("netns", "del", probe)
    return None


def free_subnet() -> int:
    """X of a 10.251.X.0/24 no interface of this machine uses, starting from our pid."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for step in range(250):
        x = (TAG + step) % 250 + 1
        if f"10.251.{x}." not in used:
            return x
    raise RuntimeError("every 10.251.X.0/24 is in use on this machine")


def kill_namespace(netns: str) -> None:
    """Kill everything in the namespace, then delete it."""

    def killed_all() -> bool:
        pids = netns_pids(netns)
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return not pids

    try:
        wait_for(killed_all, 10, f"every process in namespace {netns} to die")
    finally:
        ip_quiet("netns", "del", netns)


@dataclass
class Host:
    name: str
    netns: str
    ip: str
    root: Path  # the SSH server's home/ and keys/, the host's rayctl-tmp/
    sshd_pid: int = 0

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def temp_dir(self) -> Path:
        return self.root / "rayctl-tmp"

    def pids(self) -> set[int]:
        """Processes in the host's namespace other than its SSH server."""
        return netns_pids(self.netns) - {self.sshd_pid}

    def raylets(self) -> set[int]:
        return {p for p in self.pids() if "runtime.raylet.main" in " ".join(_cmdline(p))}

    def commands(self) -> list[str]:
        path = self.root / COMMANDS_FILE
        return path.read_text().splitlines() if path.exists() else []


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def make_network(stack: ExitStack, root: Path) -> list[Host]:
    """A bridge with 10.251.X.1 and one namespace per host, veth'd into it; `stack` undoes
    each piece, processes first, whatever fails later."""
    x = free_subnet()
    bridge = f"rcbr{TAG}"
    ip("link", "add", bridge, "type", "bridge")
    stack.callback(ip_quiet, "link", "del", bridge)
    ip("addr", "add", f"10.251.{x}.1/24", "dev", bridge)
    ip("link", "set", bridge, "up")
    hosts = []
    for index, name in enumerate(HOST_NAMES):
        host = Host(name, f"rc{TAG}-{name}", f"10.251.{x}.{index + 2}", root / name)
        veth = f"rcv{TAG}{index}"
        ip("netns", "add", host.netns)
        stack.callback(kill_namespace, host.netns)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        # Deleted by hand: a namespace's veth goes with it only when the kernel gets round to it.
        stack.callback(ip_quiet, "link", "del", veth)
        ip("link", "set", veth, "master", bridge, "up")
        ip("-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        ip("-n", host.netns, "link", "set", "eth0", "up")
        ip("-n", host.netns, "link", "set", "lo", "up")
        hosts.append(host)
    return hosts


def start_sshd(stack: ExitStack, host: Host, key: Path) -> None:
    """tests/ssh_host.py inside the host's namespace, listening on its address, port 22."""
    host.root.mkdir(parents=True)
    log = open(host.root / "sshd.log", "ab")
    stack.callback(log.close)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", host.netns, sys.executable, str(TESTS / "ssh_host.py"),
         str(host.root), "--host", host.ip, "--port", "22", "--key", str(key)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    stack.callback(stop_process, proc)
    ready = host.root / READY_FILE

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the SSH host {host.name} exited:\n"
                                 + (host.root / "sshd.log").read_text())
        return ready.exists()

    wait_for(up, 20, f"the SSH server of {host.name} on {host.ip}:22")
    host.sshd_pid = proc.pid  # `ip netns exec` execs the command: the same process


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def free_shared_memory(hosts: list[Host]) -> None:
    """A SIGKILLed raylet leaves its /dev/shm directory; the sessions list them."""
    for host in hosts:
        for listing in host.temp_dir.glob("session_*/shm_dirs"):
            for line in listing.read_text().splitlines():
                path = Path(line.strip())
                if path.name.startswith("rayctl-"):
                    shutil.rmtree(path, ignore_errors=True)


# --- the cluster ------------------------------------------------------------------------------


@dataclass
class Rack:
    root: Path
    config_file: Path
    hosts: list[Host]

    def provider(self) -> OnPremProvider:
        """A provider object of our own over the same claims file the CLI and monitor use."""
        return OnPremProvider(NAME, {"head_ip": self.hosts[0].ip,
                                     "state_dir": str(self.root / "state")}, NODE_TYPES)

    def host_of(self, instance: Instance) -> Host:
        return next(h for h in self.hosts if h.ip == instance.tags[TAG_HOST])




def client_key(keys: Path) -> Path:
    keys.mkdir(mode=0o700)
    key = keys / "id_ed25519"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(key))
    key.chmod(0o600)
    return key


def write_config(root: Path, hosts: list[Host], key: Path) -> Path:
    head, *workers = hosts
    config_file = root / "cluster.yaml"
    config_file.write_text(yaml.safe_dump({
        "cluster_name": NAME,
        "max_workers": 2,
        "provider": {
            "type": "onprem",
            "head_ip": head.ip,
            "worker_ips": [w.ip for w in workers],
            "ssh_client": "asyncssh",  # no OpenSSH master processes outliving the test
            "state_dir": str(root / "state"),
            "stop_timeout_s": 30,
        },
        "auth": {"ssh_user": USER, "ssh_private_key": str(key)},
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 0}},
            "worker": {"resources": {"CPU": 1}, "max_workers": 2},
        },
    }))
    return config_file


@pytest.fixture
def rack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rack]:
    """Three namespaced hosts and a config naming them. At exit: `down`, then every process in
    the namespaces is killed and the namespaces, veths and bridge are deleted, whatever happened."""
    reason = unusable_reason()
    if reason:
        pytest.skip(reason)
    shim = install_python_shim(tmp_path / "shim")
    monkeypatch.setenv("HOME", str(tmp_path / "client-home"))
    for name in ("RAYCTL_ADDRESS", "RAYCTL_TOKEN_FILE", "RAYCTL_HEAD_ADDRESS", "RAYCTL_TEMP_DIR",
                 "RAYCTL_NODE_IP_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(launcher_ship, "build_wheel", fake_wheel)
    key = client_key(tmp_path / "keys")
    with ExitStack() as stack:
        hosts = make_network(stack, tmp_path)
        stack.callback(free_shared_memory, hosts)  # after the namespaces' processes died
        for host in hosts:
            start_sshd(stack, host, key)
            # What a user's ~/.profile on the host would say (the runners use login shells).
            (host.home / ".profile").write_text(
                f"export PATH={shim}:{Path(sys.executable).parent}:$PATH\n"
                f"export RAYCTL_TEMP_DIR={host.temp_dir}\n"
            )
        config_file = write_config(tmp_path, hosts, key)
        stack.callback(invoke, "down", str(config_file), "-y")  # first of all at exit
        yield Rack(tmp_path, config_file, hosts)


def test_up_demand_runs_tasks_inside_worker_namespaces_and_down_releases_all(
    rack: Rack,
) -> None:
    head, *workers = rack.hosts
    up = invoke("up", str(rack.config_file), "-y")
    assert up.exit_code == 0, up.output
    record = load_record(NAME)
    assert record is not None
    # The GCS listens on the head's own address: the one worker hosts can reach.
    assert record.address.startswith(f"{head.ip}:"), record.address
    assert head.raylets()
    assert not any(w.pids() for w in workers)  # no demand yet

    script = rack.root / "where.py"
    script.write_text(DRIVER)
    submitted = invoke("submit", str(rack.config_file), str(script))
    assert submitted.exit_code == 0, submitted.output
    report = json.loads(submitted.output.strip().splitlines()[-1])

    claimed = {i.id: rack.host_of(i) for i in rack.provider().list_instances() if not i.is_head}
    assert claimed and head not in claimed.values()
    for node_id, pid in report["ran"]:
        address, instance_id = report["nodes"][node_id]
        host = claimed[instance_id]
        assert address == host.ip  # the raylet advertises its host's address, not loopback
        assert pid in host.pids(), f"task worker {pid} is not in {host.netns}"
        assert host.raylets()
        assert any("rayctl start --address" in c for c in host.commands())

    assert report["nodes"][report["driver"]][0] == head.ip
    assert report["nodes"][report["made_on"]][0] != head.ip  # so the 4 MiB crossed the bridge

    # A driver on a worker host, given the head's address, joins that host's own raylet.
    worker = next(iter(claimed.values()))
    env = {**os.environ, "RAYCTL_ADDRESS": record.address, "RAYCTL_TOKEN_FILE": record.token_file}
    there = subprocess.run(["ip", "netns", "exec", worker.netns, sys.executable, "-c", DRIVER],
                           env=env, capture_output=True, text=True, timeout=90)
    assert there.returncode == 0, there.stderr
    report = json.loads(there.stdout.strip().splitlines()[-1])
    assert report["nodes"][report["driver"]][0] == worker.ip

    down = invoke("down", str(rack.config_file), "-y")
    assert down.exit_code == 0, down.output
    assert all(instance_id in down.output for instance_id in claimed)
    assert rack.provider().list_instances() == []
    wait_for(lambda: not any(h.pids() for h in rack.hosts), 15,
             "no process left in any host's namespace")
    assert load_record(NAME) is None


def _runners(tmp_path: Path) -> dict[str, CommandRunner]:
    from plugins.local_nodes import LocalNodes

    from autoscaler.launcher.head import EnvRunner
    from providers.fake import FakeProvider
    from providers.local.runner import LocalCommandRunner
    from providers.ssh import runner_for

    simulated = Instance("i-9", "worker", Offering("m5.large"), ProviderState.RUNNING)
    local = LocalCommandRunner("slot-1", "worker", tmp_path, lambda _process: None)
    return {
        "ssh": runner_for("10.251.7.3", {"ssh_user": USER}),  # on-prem and cloud nodes
        "fake": FakeProvider("c", {}, {}).command_runner(simulated),  # a machine elsewhere
        "local": local,  # a local provider slot
        "local-for-a-head": EnvRunner(local, {}),  # as `up` wraps the head's runner
        "plugin": LocalNodes(tmp_path / "nodes", "c").runner(simulated),  # a simulated VM
    }


@pytest.mark.parametrize(("runner", "expected"), [
    ("ssh", "10.251.7.3"),
    ("fake", "10.251.7.3"),
    ("local", ""),  # its commands run here, where 10.251.7.3 is nobody's address
    ("local-for-a-head", ""),
    ("plugin", ""),
])
def test_nodes_bind_their_internal_ip_unless_their_commands_run_on_this_machine(
    runner: str, expected: str, tmp_path: Path
) -> None:
    instance = Instance("i-1", "worker", Offering("m5.large"), ProviderState.RUNNING,
                        internal_ip="10.251.7.3", external_ip="203.0.113.9")
    assert node_ip_address(_runners(tmp_path)[runner], instance) == expected


def test_a_node_named_by_host_name_is_recognised_as_this_machine() -> None:
    """On-prem hosts may be listed by name (`worker_ips: [host1]`): a driver on such a host
    must still find its own raylet (it binds that raylet's address)."""
    from runtime.cluster_client import _ip_of, machine_addresses

    assert _ip_of("localhost") in machine_addresses()
    assert _ip_of("10.251.0.7") == "10.251.0.7"  # an IP is taken as it is, never looked up

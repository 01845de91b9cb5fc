"""Objects whose owner's whole machine went away are freed. The owner is a driver on another host
(a network namespace on a private bridge, its own raylet); its objects live on the head's node.
Then the host's link goes down: connections to the owner neither succeed nor get refused (a
machine that is gone answers nothing), the GCS declares that node dead, and the head's raylet
frees the objects. Needs root and `ip netns` (skipped otherwise)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from polling import wait_for
from test_onprem_netns import ip, kill_namespace, make_network, unusable_reason

from runtime.cluster_utils import Cluster
from runtime.raylet.owner_death import Probe, gone_owners

OBJECTS, OBJECT_BYTES = 5, 20 * 1024**2

DRIVER = textwrap.dedent("""\
    import sys, time
    import runtime as rt
    rt.init(address=sys.argv[1])

    @rt.remote(resources={"store": 1}, num_cpus=0)
    def make(i, size):
        return bytes([i]) * size

    held = [make.remote(i, int(sys.argv[2])) for i in range(int(sys.argv[3]))]
    rt.wait(held, num_returns=len(held), timeout=60, fetch_local=False)
    assert len(rt.get(held[0], timeout=60)) == int(sys.argv[2])  # made, not failed
    print("held", flush=True)
    time.sleep(600)
""")


def test_the_rule_frees_silent_owners_only_on_machines_the_cluster_lost() -> None:
    probes = [
        ("10.0.0.2:4000", Probe.SILENT),  # its node is dead and nothing else lives there
        ("10.0.0.3:4000", Probe.SILENT),  # a live node's host: busy, not gone
        ("192.168.1.9:4000", Probe.SILENT),  # not a node at all (a driver off the cluster)
        ("10.0.0.4:4000", Probe.REFUSED),  # the process is gone, wherever it was
        ("10.0.0.2:4001", Probe.ANSWERED),
    ]
    dead = gone_owners(probes, live_hosts={"10.0.0.3"}, dead_hosts={"10.0.0.2", "10.0.0.3"})
    assert dead == {"10.0.0.2:4000", "10.0.0.4:4000"}


def _store_bytes(shm_dir: str) -> int:
    with os.scandir(shm_dir) as entries:
        return sum(e.stat().st_size for e in entries if "." not in e.name and e.is_file())


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[list, ExitStack]]:  # type: ignore[type-arg]
    reason = unusable_reason()
    if reason:
        pytest.skip(reason)
    with ExitStack() as stack:
        yield make_network(stack, tmp_path), stack


def test_objects_of_an_owner_whose_machine_vanished_are_freed(
    network: tuple[list, ExitStack], tmp_path: Path  # type: ignore[type-arg]
) -> None:
    hosts, stack = network
    owner_host = hosts[1]
    bridge_ip = owner_host.ip.rsplit(".", 1)[0] + ".1"
    cluster = Cluster(
        {"host": bridge_ip, "num_cpus": 1, "resources": {"store": 4},
         "object_store_memory": 256 * 1024**2},
        death_timeout_s=2.0,
    )
    stack.callback(cluster.shutdown)
    env = {**os.environ, "RAYCTL_TOKEN_FILE": cluster.head.token_file}
    in_host = ["ip", "netns", "exec", owner_host.netns]
    owner_temp = tmp_path / "owner-tmp"

    def remove_the_lost_nodes_leftovers() -> None:
        kill_namespace(owner_host.netns)  # its raylet dies with its machine: nobody cleans up
        for record in owner_temp.glob("**/session_*/shm_dirs"):
            for line in record.read_text().splitlines():
                if line.strip():
                    shutil.rmtree(line.strip(), ignore_errors=True)

    stack.callback(remove_the_lost_nodes_leftovers)
    started = subprocess.run(
        [*in_host, sys.executable, "-m", "autoscaler.cli", "start", "--address", cluster.address,
         "--node-ip-address", owner_host.ip, "--num-cpus", "1",
         "--temp-dir", str(owner_temp)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    driver = subprocess.Popen(
        [*in_host, sys.executable, "-c", DRIVER, cluster.address, str(OBJECT_BYTES),
         str(OBJECTS)],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    stack.callback(driver.wait, 10)
    stack.callback(driver.kill)
    assert driver.stdout is not None and driver.stdout.readline().strip() == "held"
    shm_dir = cluster.head.shm_dir
    assert _store_bytes(shm_dir) >= OBJECTS * OBJECT_BYTES
    ip("-n", owner_host.netns, "link", "set", "eth0", "down")  # the machine is gone
    lost_at = time.monotonic()
    wait_for(lambda: _store_bytes(shm_dir) == 0, 30, "the lost machine's objects to be freed")
    print(f"freed {OBJECTS * OBJECT_BYTES} bytes {time.monotonic() - lost_at:.1f}s after the "
          "owner's machine went away")

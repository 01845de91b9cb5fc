"""Objects are freed when their owner dies: a driver killed with SIGKILL while holding objects
made by tasks on another node gives that node's shared memory back; a live owner keeps its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from runtime.cluster_utils import Cluster
from tests.polling import wait_for

OBJECTS = 10
OBJECT_BYTES = 10 * 1024**2

# A driver that makes OBJECTS x OBJECT_BYTES on the node with the "worker" resource, holds them,
# says so, then waits to be killed.
DRIVER = textwrap.dedent(f"""
    import sys, time
    import runtime as rt
    rt.init(address=sys.argv[1], _token=sys.argv[2], _temp_dir=sys.argv[3])

    @rt.remote(resources={{"worker": 1}}, num_cpus=0)
    def make(i):
        return bytes([i]) * {OBJECT_BYTES}

    refs = [make.remote(i) for i in range({OBJECTS})]
    assert len(rt.get(refs[0])) == {OBJECT_BYTES}
    rt.wait(refs, num_returns=len(refs), fetch_local=False)
    print("holding", flush=True)
    time.sleep(600)
""")


# A driver that hands a detached actor (on the worker node) one of its objects to borrow, and lets
# the actor make an object of its own; then waits to be killed.
LENDER = textwrap.dedent(f"""
    import sys, time
    import runtime as rt
    rt.init(address=sys.argv[1], _token=sys.argv[2], _temp_dir=sys.argv[3])

    @rt.remote(resources={{"worker": 1}}, num_cpus=0)
    class Keeper:
        def hold(self, refs):
            self.lent = refs[0]
            self.own = rt.put(b"o" * {OBJECT_BYTES})
        def own_value(self):
            return rt.get(self.own)
        def lent_value(self):
            return rt.get(self.lent, timeout=20)

    keeper = Keeper.options(name="keeper", namespace="owners", lifetime="detached").remote()
    rt.get(keeper.hold.remote([rt.put(b"l" * {OBJECT_BYTES})]))
    print("lent", flush=True)
    time.sleep(600)
""")


def sealed_bytes(shm_dir: str) -> int:
    """Bytes of sealed objects in a node's store (no spare files, no partial writes)."""
    with os.scandir(shm_dir) as entries:
        return sum(e.stat().st_size for e in entries if "." not in e.name and e.is_file())


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Cluster]:
    cluster = Cluster({"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=2, resources={"worker": 4}, object_store_memory=512 * 1024**2)
        cluster.connect()
        yield cluster
    finally:
        cluster.shutdown()


def test_killed_driver_frees_objects_on_another_node(two_nodes: Cluster) -> None:
    import runtime as rt

    worker_node = two_nodes.nodes[1]

    @rt.remote(resources={"worker": 1}, num_cpus=0)
    def make() -> bytes:
        return b"k" * OBJECT_BYTES

    kept = make.remote()  # a live owner's object on the same node: never freed
    rt.wait([kept], fetch_local=False)
    before = sealed_bytes(worker_node.shm_dir)
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, two_nodes.address, two_nodes.token, two_nodes.temp_dir],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert driver.stdout is not None and driver.stdout.readline().strip() == "holding"
        held = sealed_bytes(worker_node.shm_dir) - before
        assert held >= OBJECTS * OBJECT_BYTES
        driver.kill()
        driver.wait(10)
        killed_at = time.monotonic()
        wait_for(
            lambda: sealed_bytes(worker_node.shm_dir) <= before,
            timeout_s=10,
            what="the killed driver's objects to be freed",
        )
        print(f"freed {held} bytes {time.monotonic() - killed_at:.2f}s after kill -9")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
    assert rt.get(kept) == b"k" * OBJECT_BYTES


def test_borrower_of_a_dead_owners_object_gets_owner_died(two_nodes: Cluster) -> None:
    import runtime as rt
    from runtime.exceptions import OwnerDiedError

    lender = subprocess.Popen(
        [sys.executable, "-c", LENDER, two_nodes.address, two_nodes.token, two_nodes.temp_dir],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert lender.stdout is not None and lender.stdout.readline().strip() == "lent"
        lender.kill()
        lender.wait(10)
        keeper = rt.get_actor("keeper", namespace="owners")
        with pytest.raises(OwnerDiedError):
            rt.get(keeper.lent_value.remote(), timeout=30)
        # a detached actor outlives the driver that made it, and so do the objects it owns
        assert rt.get(keeper.own_value.remote(), timeout=30) == b"o" * OBJECT_BYTES
        rt.kill(keeper)
    finally:
        if lender.poll() is None:
            lender.kill()
            lender.wait(10)

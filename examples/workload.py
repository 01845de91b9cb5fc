"""The main job (`bash scripts/main.sh`): `rayctl up` a local cluster whose head has no CPUs,
run a real workload whose tasks make the autoscaler launch worker nodes, show the cluster
status, then `rayctl down`, and check nothing is left running."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

import runtime as rt

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cluster-configs", "local.yaml")


@rt.remote(num_cpus=1)
def simulate(seed: int) -> tuple[float, str]:
    rng = np.random.default_rng(seed)
    time.sleep(0.5)  # long enough that the queue asks for more nodes
    return float(rng.standard_normal(200_000).mean()), rt.get_runtime_context().get_node_id()


@rt.remote(num_cpus=1)
def checksum(matrix: np.ndarray) -> float:
    print(f"checksumming a {matrix.nbytes / 1e6:.0f} MB matrix made on another process")
    return float(matrix.sum())


@rt.remote
class Accumulator:
    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, value: float) -> int:
        self.values.append(value)
        return len(self.values)

    def mean(self) -> float:
        return sum(self.values) / len(self.values)


def rayctl(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "autoscaler.cli", *args], check=True)


def main() -> int:
    rayctl("up", "-y", CONFIG)
    try:
        # the cluster `up` made on this machine, by its name (token included; "auto" works too
        # when it is the only cluster here)
        info = rt.init(address="local")
        print(f"connected to {info['address']}: {len(rt.nodes())} node(s), {rt.cluster_resources()}")
        t0 = time.perf_counter()
        results = rt.get([simulate.remote(i) for i in range(12)], timeout=300)
        nodes = {node for _, node in results}
        print(f"12 simulations in {time.perf_counter() - t0:.1f}s on {len(nodes)} autoscaled node(s); "
              f"mean {np.mean([r for r, _ in results]):+.5f}")
        acc = Accumulator.remote()
        rt.get([acc.add.remote(r) for r, _ in results])
        print(f"actor mean {rt.get(acc.mean.remote()):+.5f}")
        matrix = rt.put(np.ones((2048, 2048)))
        print(f"checksum of a shared 32 MB matrix: {rt.get(checksum.remote(matrix)):.0f}")
        rt.shutdown()
        rayctl("status", CONFIG)
    finally:
        if rt.is_initialized():
            rt.shutdown()
        rayctl("down", "-y", CONFIG)
    return 0


if __name__ == "__main__":
    sys.exit(main())

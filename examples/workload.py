"""An example workload: a cluster started with `rayctl start --head`, tasks, an actor, a large
numpy object, then `rayctl stop`. Run by `bash scripts/main.sh`."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

import runtime as rt


@rt.remote
def simulate(seed: int) -> float:
    rng = np.random.default_rng(seed)
    return float(rng.standard_normal(100_000).mean())


@rt.remote
class Accumulator:
    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, value: float) -> int:
        self.values.append(value)
        return len(self.values)

    def mean(self) -> float:
        return sum(self.values) / len(self.values)


@rt.remote
def checksum(matrix: np.ndarray) -> float:
    print(f"checksumming a {matrix.nbytes / 1e6:.0f} MB matrix")
    return float(matrix.sum())


def main() -> int:
    rayctl = [sys.executable, "-m", "autoscaler.cli"]
    subprocess.run([*rayctl, "start", "--head", "--num-cpus", "2"], check=True)
    try:
        t0 = time.perf_counter()
        rt.init(address="auto")
        print(
            f"connected in {time.perf_counter() - t0:.2f}s; nodes: {len(rt.nodes())}, "
            f"resources: {rt.cluster_resources()}"
        )
        t0 = time.perf_counter()
        results = rt.get([simulate.remote(i) for i in range(200)])
        print(f"200 simulations in {time.perf_counter() - t0:.2f}s, mean {np.mean(results):+.5f}")
        acc = Accumulator.remote()
        rt.get([acc.add.remote(r) for r in results])
        print(f"actor mean {rt.get(acc.mean.remote()):+.5f}")
        matrix = rt.put(np.ones((2048, 2048)))
        print(f"checksum of a shared 32 MB matrix: {rt.get(checksum.remote(matrix)):.0f}")
        rt.shutdown()
    finally:
        subprocess.run([*rayctl, "stop"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

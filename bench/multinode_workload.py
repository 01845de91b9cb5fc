"""The multi-node benchmark workload, run once against Ray and once against our runtime, each with
a 3-node cluster on this machine (head + nodes A and B). Prints a cumulative JSON snapshot on
stdout after each line, as bench/core_workload.py does: the last line is the result.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
from core_workload import LineTimeout, time_limit

MODULES = {"ray": "ray", "rayctl": "runtime"}
PAGE = 4096


def make_array(nbytes: int) -> np.ndarray:
    return np.ones(nbytes, dtype=np.uint8)  # ones: every page is real


def touch_pages(array: np.ndarray) -> int:
    """Read one byte of every page: the whole object must be present, with almost no compute."""
    return int(array[::PAGE].sum())


def noop() -> None:
    return None


class Workload:
    """Lines in order; a failing line is recorded in `errors` and the run goes on."""

    def __init__(self, rt: ModuleType, backend: str, quick: bool, object_store: int,
                 tls: bool = False) -> None:
        self.rt, self.backend, self.quick, self.object_store = rt, backend, quick, object_store
        self.tls = tls  # ours: a cluster started with TLS; Ray's comes from its environment
        self.results: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.info: dict[str, Any] = {"version": getattr(rt, "__version__", "?")}
        self.cluster: Any = None
        self.node_a = self.node_b = ""

    def emit(self) -> None:
        print(json.dumps({"backend": self.backend, "results": self.results, "errors": self.errors,
                          "info": self.info}), flush=True)

    def measure(self, keys: tuple[str, ...], line: Callable[[], tuple[float, ...]],
                timeout_s: int = 240) -> None:
        try:
            with time_limit(timeout_s):
                self.results.update(zip(keys, line(), strict=True))
        except (Exception, LineTimeout) as exc:
            for key in keys:
                self.errors[key] = f"{type(exc).__name__}: {exc}"[:400]
        gc.collect()  # drop the line's refs so its objects are freed before the next line
        self.emit()

    # --- the cluster ----------------------------------------------------------------------

    def start(self) -> None:
        store = self.object_store
        if self.backend == "ray":
            from ray.cluster_utils import Cluster

            # Ray's defaults, as bench/core.py runs it (it binds the machine's own address)
            self.cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 1, "object_store_memory": store})
            a = self.cluster.add_node(num_cpus=2, object_store_memory=store)
            b = self.cluster.add_node(num_cpus=2, object_store_memory=store)
            self.node_a, self.node_b = a.node_id, b.node_id
            self.rt.init(address=self.cluster.address)
        else:
            from runtime.cluster_utils import Cluster as OurCluster

            self.cluster = OurCluster(head_node_args={"num_cpus": 1, "object_store_memory": store,
                                                      "tls": self.tls})
            a = self.cluster.add_node(num_cpus=2, object_store_memory=store)
            b = self.cluster.add_node(num_cpus=2, object_store_memory=store)
            self.node_a, self.node_b = a.node_id, b.node_id
            self.cluster.connect()
        self._wait_nodes(3)

    def _wait_nodes(self, count: int) -> None:
        deadline = time.monotonic() + 60
        while len([n for n in self.rt.nodes() if n["Alive"]]) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} nodes alive after 60 s")
            time.sleep(0.1)

    def stop(self) -> None:
        start = time.perf_counter()
        try:
            self.rt.shutdown()
        finally:
            self.cluster.shutdown()
        self.info["teardown_s"] = round(time.perf_counter() - start, 2)

    def pinned(self, fn: Callable[..., Any], node: str, **opts: Any) -> Any:
        mod = importlib.import_module(f"{self.rt.__name__}.util.scheduling_strategies")
        strategy = mod.NodeAffinitySchedulingStrategy(node_id=node, soft=False)
        return self.rt.remote(fn).options(scheduling_strategy=strategy, **opts)

    # --- the lines ------------------------------------------------------------------------

    def transfer(self, nbytes: int, repeats: int) -> tuple[float]:
        """GB/s of a read on node B of an object made on node A (see bench/README.md)."""
        rt = self.rt
        make = self.pinned(make_array, self.node_a, num_cpus=0)
        read = self.pinned(touch_pages, self.node_b, num_cpus=0)
        noop_b = self.pinned(noop, self.node_b, num_cpus=0)
        rt.get([noop_b.remote() for _ in range(3)])  # warm: a worker waits on node B
        baselines, reads = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            rt.get(noop_b.remote())
            baselines.append(time.perf_counter() - start)
            ref = make.remote(nbytes)
            rt.wait([ref], fetch_local=False)  # made and sealed on A, not pulled to the driver
            start = time.perf_counter()
            pages = rt.get(read.remote(ref))
            reads.append(time.perf_counter() - start)
            if pages != -(-nbytes // PAGE):
                raise AssertionError(f"node B read {pages} pages, expected {-(-nbytes // PAGE)}")
            del ref
            gc.collect()
            time.sleep(0.5)  # let both stores free the object before the next one is made
        net = statistics.median(reads) - statistics.median(baselines)
        key = f"transfer_{nbytes // 10**6}mb"
        self.info[key] = {"read_rtt_ms": [round(r * 1e3, 1) for r in reads],
                          "noop_rtt_ms": [round(b * 1e3, 2) for b in baselines]}
        return (nbytes / net / 1e9,)

    def placement_groups(self, count: int) -> tuple[float]:
        pg_mod = importlib.import_module(f"{self.rt.__name__}.util.placement_group")
        rt = self.rt

        def one() -> None:
            pg = pg_mod.placement_group([{"CPU": 0.01}], strategy="PACK")
            rt.get(pg.ready(), timeout=30)
            pg_mod.remove_placement_group(pg)

        for _ in range(5):
            one()
        start = time.perf_counter()
        for _ in range(count):
            one()
        return (count / (time.perf_counter() - start),)

    def tasks(self, count: int) -> tuple[float]:
        rt = self.rt
        task = rt.remote(noop)
        where = rt.remote(_where_fn(self.backend))
        rt.get([task.remote() for _ in range(500)])  # warm-up: workers on every node
        start = time.perf_counter()
        values = rt.get([task.remote() for _ in range(count)], timeout=300)
        elapsed = time.perf_counter() - start
        if len(values) != count:
            raise AssertionError(f"got {len(values)} results for {count} tasks")
        spread = rt.get([where.remote() for _ in range(1000)])
        self.info["tasks_per_node_of_1000"] = sorted(
            (spread.count(n) for n in set(spread)), reverse=True)
        return (count / elapsed,)

    def run(self) -> None:
        quick = self.quick
        self.measure(("start_s",), self._timed_start, timeout_s=120)
        if "start_s" not in self.results:
            return
        try:
            self.measure(("transfer_100mb_gb_s",), lambda: self.transfer(100_000_000, 2 if quick else 5))
            if not quick:
                self.measure(("transfer_1gb_gb_s",), lambda: self.transfer(1_000_000_000, 3))
            self.measure(("pg_per_s",), lambda: self.placement_groups(20 if quick else 50))
            self.measure(("tasks_10k_per_s",), lambda: self.tasks(2_000 if quick else 10_000))
        finally:
            self.stop()
            self.emit()

    def _timed_start(self) -> tuple[float]:
        start = time.perf_counter()
        self.start()
        return (time.perf_counter() - start,)


def _where_fn(backend: str) -> Callable[[], str]:
    rt = importlib.import_module(MODULES[backend])

    def where() -> str:
        return str(rt.get_runtime_context().get_node_id())

    return where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=sorted(MODULES), required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--object-store-gb", type=float, default=3.0)
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args(argv)
    rt = importlib.import_module(MODULES[args.backend])
    Workload(rt, args.backend, args.quick, int(args.object_store_gb * 1e9), args.tls).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The core benchmark workload, run once against Ray and once against our runtime.

Uses only the API both share (`init`, `shutdown`, `remote`, `get`, `put`), imported as `rt`.
After each measurement it prints a cumulative JSON snapshot on stdout: the last line is the result.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType, ModuleType
from typing import Any

import numpy as np
import psutil

ARRAY_BYTES = 100_000_000  # "100 MB": GB/s below are 1e9 bytes per second
MODULES = {"ray": "ray", "rayctl": "runtime"}
# A token naming a cluster session in a command line, e.g. Ray's session_2025-11-26_00-20-00_1_2.
SESSION_TOKEN = re.compile(r"session[_-][A-Za-z0-9_.:-]{4,}")


@dataclass(frozen=True, slots=True)
class Budget:
    rate_s: float  # how long one rate measurement runs, after its warm-up
    warmup_calls: int
    async_tasks: int  # tasks submitted at once by "tasks async"
    actor_batch: int  # calls per `get` by "actor calls async"
    line_timeout_s: int  # a line still running after this is recorded as timed out
    settle_stable_s: float  # the cluster's process set must not change for this long


FULL = Budget(rate_s=2.0, warmup_calls=100, async_tasks=10_000, actor_batch=1_000,
              line_timeout_s=90, settle_stable_s=3.0)
QUICK = Budget(rate_s=0.5, warmup_calls=20, async_tasks=1_000, actor_batch=200,
               line_timeout_s=45, settle_stable_s=2.0)


def small_value() -> bytes:
    return b"ok"


class Actor:
    def small_value(self) -> bytes:
        return b"ok"


class LineTimeout(Exception):
    """A measurement did not finish within its line's time limit."""


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise LineTimeout in the main thread after `seconds` (a blocking get is interruptible)."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise LineTimeout(f"no result within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def timed_rate(call: Callable[[], object], seconds: float, warmup: int) -> list[float]:
    """Run `call` `warmup` times, then repeatedly for `seconds`; return each timed call's latency."""
    for _ in range(warmup):
        call()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        call()
        end = time.perf_counter()
        latencies.append(end - start)
        if end >= deadline:
            return latencies


def per_second(latencies: list[float], items_per_call: float = 1.0) -> float:
    return len(latencies) * items_per_call / sum(latencies)


def cluster_processes(driver_pid: int) -> list[psutil.Process]:
    """Every process of the cluster the driver started: its descendants, plus any process whose
    command line names the same session (daemons that double-forked away from the driver)."""
    found = {proc.pid: proc for proc in psutil.Process(driver_pid).children(recursive=True)}
    tokens = {tok for tok in _session_tokens(found.values()) if any(c.isdigit() for c in tok)}
    if tokens:
        skip = {driver_pid, os.getppid()}
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.pid not in skip and any(tok in cmdline for tok in tokens):
                found.setdefault(proc.pid, proc)
    return list(found.values())


def _session_tokens(procs: Iterable[psutil.Process]) -> set[str]:
    tokens: set[str] = set()
    for proc in procs:
        try:
            tokens.update(SESSION_TOKEN.findall(" ".join(proc.cmdline())))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return tokens


def settled_cluster(driver_pid: int, stable_s: float, deadline_s: float) -> list[psutil.Process]:
    """The cluster's processes once their set has not changed for `stable_s`."""
    start = last_change = time.perf_counter()
    last: frozenset[int] = frozenset()
    while True:
        procs = cluster_processes(driver_pid)
        pids = frozenset(proc.pid for proc in procs)
        now = time.perf_counter()
        if pids != last:
            last, last_change = pids, now
        elif now - last_change >= stable_s or now - start >= deadline_s:
            return procs
        time.sleep(0.25)


def pss_bytes(procs: Iterable[psutil.Process]) -> int:
    total = 0
    for proc in procs:
        try:
            total += proc.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class Workload:
    """Runs the lines in order; each line's figures land in `results`, its failure in `errors`."""

    def __init__(self, rt: ModuleType, backend: str, budget: Budget) -> None:
        self.rt, self.backend, self.budget = rt, backend, budget
        self.task: Any = None  # the remote function and class, made by the init line
        self.actor_cls: Any = None
        self.results: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.info: dict[str, Any] = {"module": rt.__name__, "version": getattr(rt, "__version__", "?")}
        self.cluster: list[psutil.Process] = []

    def emit(self) -> None:
        snapshot = {"backend": self.backend, "results": self.results, "errors": self.errors,
                    "info": self.info}
        print(json.dumps(snapshot), flush=True)

    def measure(self, keys: tuple[str, ...], line: Callable[[], tuple[float, ...]]) -> bool:
        try:
            with time_limit(self.budget.line_timeout_s):
                values = line()
            self.results.update(zip(keys, values, strict=True))
        except Exception as exc:  # a failing line must not hide the others
            for key in keys:
                self.errors[key] = f"{type(exc).__name__}: {exc}"[:400]
        self.emit()
        return not any(key in self.errors for key in keys)

    def run(self, num_cpus: int) -> None:
        if not self.measure(("init_s",), lambda: self.init_until_first_result(num_cpus)):
            return
        self.measure(("idle_pss_mib", "idle_processes"), self.idle_memory)
        self.measure(("tasks_sync_per_s", "task_rtt_median_ms"), self.tasks_sync)
        self.measure(("tasks_async_per_s",), self.tasks_async)
        self.measure(("actor_sync_per_s", "actor_async_per_s"), self.actor_calls)
        self.measure(("put_small_per_s", "get_small_per_s"), self.small_objects)
        self.measure(("put_100mb_gb_s", "get_100mb_gb_s"), self.big_array)
        self.measure(("shutdown_s",), self.shutdown)

    def check(self, value: object) -> None:
        if value != b"ok":
            raise AssertionError(f"a task returned {value!r}, expected b'ok'")

    def init_until_first_result(self, num_cpus: int) -> tuple[float]:
        # Made before init(), as Ray programs decorate at import time.
        self.task, self.actor_cls = self.rt.remote(small_value), self.rt.remote(Actor)
        start = time.perf_counter()
        self.rt.init(num_cpus=num_cpus)
        self.check(self.rt.get(self.task.remote()))
        return (time.perf_counter() - start,)

    def idle_memory(self) -> tuple[float, float]:
        start = time.perf_counter()
        self.cluster = settled_cluster(os.getpid(), self.budget.settle_stable_s, deadline_s=60.0)
        self.info["settle_s"] = round(time.perf_counter() - start, 2)
        self.info["idle_process_names"] = sorted(_names(self.cluster))
        if not self.cluster:
            raise LookupError(
                "found no cluster process: they must descend from the driver or name the "
                "session (e.g. session_<id>) on their command line"
            )
        return pss_bytes(self.cluster) / 2**20, float(len(self.cluster))

    def tasks_sync(self) -> tuple[float, float]:
        rt, task = self.rt, self.task
        self.check(rt.get(task.remote()))
        lat = timed_rate(lambda: rt.get(task.remote()), self.budget.rate_s, self.budget.warmup_calls)
        return per_second(lat), statistics.median(lat) * 1e3

    def tasks_async(self) -> tuple[float]:
        rt, task, count = self.rt, self.task, self.budget.async_tasks
        rt.get([task.remote() for _ in range(self.budget.warmup_calls * 2)])
        start = time.perf_counter()
        values = rt.get([task.remote() for _ in range(count)])
        elapsed = time.perf_counter() - start
        if len(values) != count:
            raise AssertionError(f"got {len(values)} results for {count} tasks")
        return (count / elapsed,)

    def actor_calls(self) -> tuple[float, float]:
        rt, budget = self.rt, self.budget
        actor = self.actor_cls.remote()
        self.check(rt.get(actor.small_value.remote()))
        sync = timed_rate(lambda: rt.get(actor.small_value.remote()), budget.rate_s,
                          budget.warmup_calls)
        batch = budget.actor_batch
        batched = timed_rate(lambda: rt.get([actor.small_value.remote() for _ in range(batch)]),
                             budget.rate_s, warmup=1)
        return per_second(sync), per_second(batched, batch)

    def small_objects(self) -> tuple[float, float]:
        rt, budget = self.rt, self.budget
        puts = timed_rate(lambda: rt.put(0), budget.rate_s, budget.warmup_calls)
        ref = rt.put(0)
        gets = timed_rate(lambda: rt.get(ref), budget.rate_s, budget.warmup_calls)
        return per_second(puts), per_second(gets)

    def big_array(self) -> tuple[float, float]:
        rt, budget = self.rt, self.budget
        array = np.ones(ARRAY_BYTES, dtype=np.uint8)  # ones, not zeros: every page is real
        puts = timed_rate(lambda: rt.put(array), budget.rate_s, warmup=1)
        ref = rt.put(array)
        view = rt.get(ref)
        if view.nbytes != ARRAY_BYTES or int(view[-1]) != 1:
            raise AssertionError("the array read back differs from the one put")
        self.info["get_100mb_read_only"] = not view.flags.writeable  # a zero-copy view is
        del view
        gets = timed_rate(lambda: rt.get(ref), budget.rate_s, warmup=1)
        self.info["get_100mb_median_ms"] = round(statistics.median(gets) * 1e3, 3)
        return per_second(puts, ARRAY_BYTES / 1e9), per_second(gets, ARRAY_BYTES / 1e9)

    def shutdown(self) -> tuple[float]:
        start = time.perf_counter()
        self.rt.shutdown()
        elapsed = time.perf_counter() - start
        _, alive = psutil.wait_procs(self.cluster, timeout=10)
        self.info["processes_left_10s_after_shutdown"] = sorted(_names(alive))
        return (elapsed,)


def _names(procs: Iterable[psutil.Process]) -> list[str]:
    names = []
    for proc in procs:
        try:
            names.append(proc.name())
        except psutil.NoSuchProcess:
            continue
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=sorted(MODULES), required=True)
    parser.add_argument("--quick", action="store_true", help="smaller counts, shorter lines")
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args(argv)
    rt = importlib.import_module(MODULES[args.backend])
    budget = QUICK if args.quick else FULL
    Workload(rt, args.backend, budget).run(args.num_cpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())

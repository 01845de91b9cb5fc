"""Planner benchmark: a seeded random cluster (10,000 queued shapes, many distinct, GPU and custom
resources among them; 20 node types; 1,000 existing nodes) -> time of planner.plan and the
number of nodes it chooses. `to_ray_args` gives the same input as the arguments of Ray's
`ResourceDemandScheduler.get_nodes_to_launch`; `--ray` also runs that once in Ray's venv
(bench/planner_ray.py; about 80 s on the default input) and prints both sides.

    python -m bench.planner [--seed 0] [--shapes 10000] [--nodes 1000] [--types 20] [--repeat 5]
                            [--ray] [--markdown]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.lifecycle import InstanceStatus
from autoscaler.model import (
    ClusterSnapshot,
    InstanceInfo,
    Node,
    NodeTypeSpec,
    ResourceDemand,
    ScalingConfig,
    Shape,
)
from autoscaler.planner import plan

GIB = 2**30
HEAD_TYPE = "head"


@dataclass(frozen=True)
class BenchInput:
    """Plain dicts first (what Ray takes), our snapshot built from exactly the same values."""

    node_types: dict[str, dict[str, Any]]  # name -> {"resources", "min_workers", "max_workers"}
    nodes: list[tuple[str, str, dict[str, float], dict[str, float]]]  # id, type, total, free
    demands: list[dict[str, float]]  # one dict per queued task, as Ray's resource_demands
    max_workers: int
    upscaling_speed: float


def generate(
    seed: int = 0, shapes: int = 10_000, nodes: int = 1_000, types: int = 20
) -> BenchInput:
    rng = random.Random(seed)
    node_types = _node_types(rng, types)
    worker_types = [t for t in node_types if t != HEAD_TYPE]
    existing = []
    for i in range(nodes):
        name = rng.choice(worker_types)
        total = dict(node_types[name]["resources"])
        used_share = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0, 1.0])  # many nodes full, some idle
        free = {k: round(v * (1 - used_share), 3) for k, v in total.items()}
        existing.append((f"node-{i:04d}", name, total, free))
    demands = [_shape(rng) for _ in range(shapes)]
    # upscaling_speed high so the comparison measures packing, not the launch-rate limiter
    return BenchInput(node_types, existing, demands, max_workers=100_000, upscaling_speed=1_000.0)


def _node_types(rng: random.Random, count: int) -> dict[str, dict[str, Any]]:
    types: dict[str, dict[str, Any]] = {
        HEAD_TYPE: {"resources": {"CPU": 8, "memory": 32 * GIB}, "min_workers": 0, "max_workers": 0}
    }
    for i in range(count - 1):
        cpus = rng.choice([2, 4, 8, 16, 32, 64, 96])
        resources: dict[str, float] = {"CPU": cpus, "memory": cpus * 4 * GIB}
        kind = i % 4
        if kind == 1:
            resources["GPU"] = rng.choice([1, 2, 4, 8])
        elif kind == 2:
            resources[f"accel_{i % 3}"] = rng.choice([1, 2, 4])
        types[f"type{i:02d}_{cpus}c"] = {
            "resources": resources,
            "min_workers": 0,
            "max_workers": 2_000,
        }
    return types


def _shape(rng: random.Random) -> dict[str, float]:
    shape: dict[str, float] = {"CPU": rng.choice([0.5, 1, 1, 1, 2, 2, 4, 8, 16])}
    if rng.random() < 0.5:
        shape["memory"] = rng.choice([1, 2, 4, 8]) * GIB
    roll = rng.random()
    if roll < 0.15:
        shape["GPU"] = rng.choice([0.5, 1, 1, 2, 4])
    elif roll < 0.25:
        shape[f"accel_{rng.randrange(3)}"] = rng.choice([1, 1, 2])
    return shape


def to_snapshot(inp: BenchInput) -> tuple[ClusterSnapshot, ScalingConfig]:
    specs = [
        NodeTypeSpec(
            name, t["resources"], t["min_workers"], t["max_workers"], launch_config_hash="h"
        )
        for name, t in inp.node_types.items()
    ]
    nodes, instances = [], []
    for node_id, node_type, total, free in inp.nodes:
        idle_since = 0.0 if free == total else None
        nodes.append(Node(node_id, node_type, total, free, f"i-{node_id}", idle_since))
        instances.append(InstanceInfo(f"i-{node_id}", node_type, InstanceStatus.RAYLET_RUNNING, "h"))
    counts: dict[Shape, int] = {}
    for demand in inp.demands:
        shape = Shape.of(demand)
        counts[shape] = counts.get(shape, 0) + 1
    snapshot = ClusterSnapshot(
        nodes=tuple(nodes),
        instances=tuple(instances),
        demands=tuple(ResourceDemand(s, c) for s, c in counts.items()),
    )
    config = ScalingConfig.of(
        specs,
        max_workers=inp.max_workers,
        upscaling_speed=inp.upscaling_speed,
        idle_timeout_s=10**9,  # measure the scale-up decision only
        head_node_type=HEAD_TYPE,
    )
    return snapshot, config


def to_ray_args(inp: BenchInput) -> dict[str, Any]:
    """Arguments for Ray's get_nodes_to_launch (plus what its provider and constructor need:
    node tags and IPs, node_types, max_workers, head type, upscaling_speed)."""
    ips = {
        node_id: f"10.0.{i // 250}.{i % 250 + 1}" for i, (node_id, *_rest) in enumerate(inp.nodes)
    }
    return {
        "constructor": {
            "node_types": {n: {**t, "node_config": {}} for n, t in inp.node_types.items()},
            "max_workers": inp.max_workers,
            "head_node_type": HEAD_TYPE,
            "upscaling_speed": inp.upscaling_speed,
        },
        "provider_nodes": {
            node_id: {
                "ip": ips[node_id],
                "tags": {"ray-node-type": "worker", "ray-user-node-type": t},
            }
            for node_id, t, _total, _free in inp.nodes
        },
        "get_nodes_to_launch": {
            "nodes": [node_id for node_id, *_rest in inp.nodes],
            "launching_nodes": {},
            "resource_demands": [dict(d) for d in inp.demands],
            "unused_resources_by_ip": {ips[n]: dict(free) for n, _t, _total, free in inp.nodes},
            "pending_placement_groups": [],
            "max_resources_by_ip": {ips[n]: dict(total) for n, _t, total, _free in inp.nodes},
            "ensure_min_cluster_size": [],
        },
    }


def run_ray(inp: BenchInput) -> dict[str, Any]:
    """Ray's get_nodes_to_launch on the same input, once, in Ray's venv: {ms, nodes, infeasible}."""
    # imported by name: mypy sees bench/ray_env.py as a top-level module from the other scripts
    env = importlib.import_module("bench.ray_env").ensure_ray_env()
    fd, path = tempfile.mkstemp(prefix="rayctl-planner-ray-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(to_ray_args(inp), f)
        script = Path(__file__).resolve().parent / "planner_ray.py"
        done = subprocess.run([str(env.python), str(script), path], capture_output=True,
                              text=True, timeout=1800, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    finally:
        os.unlink(path)
    if done.returncode != 0:
        raise RuntimeError(f"Ray's planner run failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["version"] = env.ray_version
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shapes", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--types", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ray", action="store_true", help="also run Ray's planner once (slow)")
    parser.add_argument("--markdown", action="store_true", help="with --ray: a Markdown table")
    args = parser.parse_args()
    inp = generate(args.seed, args.shapes, args.nodes, args.types)
    snapshot, config = to_snapshot(inp)
    timings, result = [], None
    for _ in range(args.repeat):
        start = time.perf_counter()
        result = plan(snapshot, config, now=1.0)
        timings.append((time.perf_counter() - start) * 1000)
    assert result is not None
    chosen = result.launch_counts()
    print(
        f"input: {args.shapes} queued shapes ({len(snapshot.demands)} distinct), "
        f"{args.nodes} nodes, {args.types} node types, seed {args.seed}"
    )
    print(
        f"rayctl planner: median {statistics.median(timings):.1f} ms (min {min(timings):.1f}, n={args.repeat})"
    )
    print(f"nodes chosen: {sum(chosen.values())} {chosen}")
    print(f"infeasible shapes: {sum(i.count for i in result.infeasible)}")
    if args.ray:
        ray = run_ray(inp)
        ours_ms, ours_nodes = statistics.median(timings), sum(chosen.values())
        ray_nodes = sum(ray["nodes"].values())
        print(f"Ray {ray['version']} get_nodes_to_launch: {ray['ms']:.0f} ms (one run)")
        print(f"nodes chosen by Ray: {ray_nodes} {ray['nodes']}")
        print(f"infeasible demands reported by Ray: {ray['infeasible']}")
        print(f"rayctl is {ray['ms'] / ours_ms:,.0f}x faster; nodes: rayctl {ours_nodes} vs Ray {ray_nodes}")
        if args.markdown:
            print(_markdown(ray, ours_ms, ours_nodes, ray_nodes))


def _markdown(ray: dict[str, Any], ours_ms: float, ours_nodes: int, ray_nodes: int) -> str:
    nodes_ratio = f"{ray_nodes / ours_nodes:.2f}×" if ours_nodes else "—"
    return "\n".join([
        "| benchmark | unit | better | Ray | rayctl | rayctl vs Ray (× better) |",
        "| --- | --- | --- | ---: | ---: | ---: |",
        f"| (b) planner time, 10k shapes × 1k nodes × 20 types | ms | lower | {ray['ms']:,.0f} | "
        f"{ours_ms:.1f} | {ray['ms'] / ours_ms:,.0f}× |",
        f"| (b) nodes chosen for that input | nodes | lower | {ray_nodes} | {ours_nodes} | "
        f"{nodes_ratio} |",
    ])


if __name__ == "__main__":
    main()

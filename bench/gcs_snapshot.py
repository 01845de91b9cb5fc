"""GCS snapshot benchmark: how long the autoscaler takes to read the whole demand snapshot of a
1,000-node cluster (issue 3 item 7, target under 50 ms): `python bench/gcs_snapshot.py`.

A real Redis is filled the way the GCS writes its tables (runtime/gcs/tables.py), then a real GCS
process starts on it (it loads the tables at start). What is timed is the monitor's own read path,
`autoscaler.observe.read_gcs` with the production node source `autoscaler.monitor.gcs_nodes`
(GetNodes over gRPC; load, actors and SDK requests from Redis in one pipeline), and, for
reference, the same read with the Redis-only node source (`observe.redis_nodes`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autoscaler.monitor import gcs_nodes  # noqa: E402
from autoscaler.observe import read_gcs, redis_nodes  # noqa: E402
from runtime.auth import create_token_file  # noqa: E402
from runtime.gcs.schema import SCHEMA_VERSION, GcsKeys, KvKey, KvNamespace  # noqa: E402
from runtime.node import free_port  # noqa: E402
from runtime.protocol import common_pb2  # noqa: E402
from runtime.redis_server import start_redis, wait_redis  # noqa: E402
from runtime.session import wait_for_file  # noqa: E402

HOST = "127.0.0.1"
CLUSTER = "benchsnap"
GIB = 2**30
TARGET_MS = 50.0


def node_info(i: int, rng: random.Random, now: float) -> common_pb2.NodeInfo:
    cpus = rng.choice([4, 8, 16, 32])
    total = {"CPU": float(cpus), "memory": float(cpus * 4 * GIB), "object_store_memory": 2.0 * GIB,
             f"node:10.0.{i // 250}.{i % 250 + 1}": 1.0}
    if i % 4 == 1:
        total["GPU"] = float(rng.choice([1, 2, 4, 8]))
    used = rng.choice([0.0, 0.5, 1.0])
    available = {k: (v if k.startswith("node:") else v * (1 - used)) for k, v in total.items()}
    return common_pb2.NodeInfo(
        node_id=f"{i:032x}", address=HOST, raylet_port=20000 + i, local_port=40000 + i,
        shm_dir=f"/dev/shm/fake-{i}", total=total, available=available, state="ALIVE",
        instance_id=f"i-{i:08x}", node_type=f"type{i % 20:02d}", idle_since=now if used == 0 else 0.0,
        last_heartbeat=now, is_head=i == 0, labels={"zone": f"z{i % 3}"},
    )


def node_load(rng: random.Random) -> str:
    """A node's backlog as the raylet reports it: a few shapes, waiting or infeasible."""
    shapes = []
    for _ in range(rng.randint(0, 4)):
        shape = {"CPU": float(rng.choice([0.5, 1, 2, 4]))}
        if rng.random() < 0.2:
            shape["GPU"] = 1.0
        shapes.append({"shape": shape, "count": rng.randint(1, 50),
                       "infeasible": rng.random() < 0.05, "kind": "task"})
    return json.dumps(shapes)


def fill(client: redis.Redis, nodes: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    now = time.time()
    keys = GcsKeys(CLUSTER)
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.schema_version, str(SCHEMA_VERSION))
    for i in range(nodes):
        info = node_info(i, rng, now)
        pipe.hset(keys.nodes, info.node_id, info.SerializeToString())
        pipe.hset(keys.load, info.node_id, node_load(rng))
    actors = nodes // 2
    for i in range(actors):  # most alive, some pending (demand)
        state = "PENDING" if i % 10 == 0 else "ALIVE"
        actor = common_pb2.ActorInfo(actor_id=f"a{i:031x}", state=state, node_id=f"{i:032x}",
                                     resources={"CPU": 1.0})
        pipe.hset(keys.actors, actor.actor_id, actor.SerializeToString())
    pgs = nodes // 10
    for i in range(pgs):
        bundles = [common_pb2.Bundle(index=b, resources={"CPU": 1.0}) for b in range(4)]
        pg = common_pb2.PlacementGroupInfo(pg_id=f"p{i:031x}", strategy="SPREAD", bundles=bundles,
                                           state="PENDING" if i % 5 == 0 else "CREATED")
        pipe.hset(keys.placement_groups, pg.pg_id, pg.SerializeToString())
    pipe.hset(keys.kv(KvNamespace.AUTOSCALER), KvKey.RESOURCE_REQUESTS, json.dumps([{"CPU": 1.0}] * 64))
    pipe.execute()
    return {"nodes": nodes, "actors": actors, "placement_groups": pgs}


@contextmanager
def redis_and_gcs(work: str, death_timeout_s: float = 3600.0
                  ) -> Iterator[tuple[redis.Redis, Callable[[], str], str]]:
    """A password-protected Redis; the yielded callable starts the GCS on it (after filling).
    The default death timeout keeps nodes that never report (this benchmark's) alive."""
    token_file = os.path.join(work, "token")
    token = create_token_file(token_file)
    port = free_port(HOST)
    os.makedirs(os.path.join(work, "redis"))
    procs: list[subprocess.Popen[bytes]] = [
        start_redis(HOST, port, token, os.path.join(work, "redis"), os.path.join(work, "redis.log"))]
    client = redis.Redis(host=HOST, port=port, password=token)

    def start_gcs() -> str:
        gcs_port = free_port(HOST)
        ready = os.path.join(work, "gcs.ready")
        log = open(os.path.join(work, "gcs.log"), "wb")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "runtime.gcs.server", "--host", HOST, "--port", str(gcs_port),
             "--redis-port", str(port), "--token-file", token_file, "--cluster-id", CLUSTER,
             "--session-dir", work, "--ready-file", ready, "--parent-pid", str(os.getpid()),
             "--death-timeout-s", str(death_timeout_s)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO)}))
        wait_for_file(ready, 60)
        return f"{HOST}:{gcs_port}"

    try:
        wait_redis(HOST, port, token)
        yield client, start_gcs, token
    finally:
        client.close()
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def time_reads(read: Callable[[], object], repeat: int) -> list[float]:
    read()  # warm-up: connections, protobuf classes
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        read()
        timings.append((time.perf_counter() - start) * 1e3)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="rayctl-gcs-snap-")
    try:
        with redis_and_gcs(work) as (client, start_gcs, token):
            sizes = fill(client, args.nodes, args.seed)
            gcs_address = start_gcs()
            via_gcs = gcs_nodes(gcs_address, token)
            via_redis = redis_nodes(client, CLUSTER)
            view = read_gcs(client, CLUSTER, via_gcs)
            if len(view.nodes) != args.nodes:
                raise AssertionError(f"GetNodes returned {len(view.nodes)} nodes, wrote {args.nodes}")
            prod = time_reads(lambda: read_gcs(client, CLUSTER, via_gcs), args.repeat)
            redis_only = time_reads(lambda: read_gcs(client, CLUSTER, via_redis), args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("autoscaler snapshot read, GetNodes + Redis (monitor's path)", prod),
        ("autoscaler snapshot read, all from Redis", redis_only),
    ]
    print(f"input: {sizes['nodes']} nodes, {sizes['actors']} actors, "
          f"{sizes['placement_groups']} placement groups; read back: {len(view.demands)} demand "
          f"shapes, {len(getattr(view, 'placement_groups', ()))} pending groups; "
          f"median of {args.repeat} reads")
    if args.markdown:
        print("\n| benchmark | unit | rayctl median | min | max | target |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, t in rows:
        med = statistics.median(t)
        if args.markdown:
            print(f"| {name} | ms | {med:.1f} | {min(t):.1f} | {max(t):.1f} | < {TARGET_MS:.0f} |")
        else:
            verdict = "met" if med < TARGET_MS else "MISSED"
            print(f"{name}: median {med:.1f} ms (min {min(t):.1f}, max {max(t):.1f}); "
                  f"target < {TARGET_MS:.0f} ms {verdict}")
    return 0 if statistics.median(prod) < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())

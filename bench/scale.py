"""Scale benchmark: `python bench/scale.py [--nodes 250,500,1000,2000] [--markdown]`.

Simulated nodes are real clients of a real GCS (a real Redis under it; no raylet processes): each
registers as a raylet does, opens its node sync stream (runtime/gcs/node_sync.py) with the
cluster's proofs, and then behaves as a raylet of the chosen model does:

- `idle`: nothing changes, so the node only pings (as often as the GCS says: 2 s);
- `busy`: the node's free resources change every `--change-every` seconds on average (a task
  started or ended, after the raylet's 100 ms batching), each change a report.

Per cluster size and model it prints the report latency (a report written on the stream until
its acknowledgement is read back: p50/p99), the GCS's CPU share read from /proc (the load
generator shares the machine's cores; the GCS's own CPU time is what is measured), what the GCS
sends (bytes a second, acknowledgements and view updates) and the view period. At the end, with
the largest cluster still connected and busy: the autoscaler's snapshot read (GetNodes plus the
Redis demand read, the monitor's path) and `rayctl status --json`'s read, timed.

Load processes: the nodes are split over `--procs` subprocesses (`--sim` is their entry point).

`--tasks N` instead: N no-op tasks returning their index, submitted at once on one node, one
`get` of all (bench/scale_tasks_workload.py): throughput and the driver's peak RSS, and Ray's at
`--ray-tasks` (100,000) in the same run, in its own venv (target: under 1.5 GiB at 1,000,000).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

TARGET_P99_MS = 50.0
TARGET_GCS_CORES = 0.5
TARGET_READ_MS = 100.0
TARGET_TASKS_RSS_MIB = 1.5 * 1024
ACK_TAG = 0x10  # ViewUpdate.ack (field 2, varint): the first byte of an acknowledgement


# -- one load process: `--sim` ---------------------------------------------------------------------
async def _simulate(opts: dict[str, Any]) -> dict[str, Any]:
    import grpc

    from runtime.auth import read_credentials
    from runtime.constants import PROTOCOL_VERSION, PYTHON_VERSION, RAYCTL_VERSION
    from runtime.grpc_auth import open_aio_channel
    from runtime.protocol import common_pb2, gcs_pb2, gcs_pb2_grpc

    credentials = read_credentials(opts["token_file"])
    rng = random.Random(opts["seed"])
    latencies: list[float] = []
    received = {"bytes": 0, "views": 0, "acks": 0}
    measuring = asyncio.Event()
    stop = asyncio.Event()
    versions = common_pb2.Versions(python=PYTHON_VERSION, rayctl=RAYCTL_VERSION, protocol=PROTOCOL_VERSION)
    channels = []

    async def node(index: int) -> None:
        node_id = f"{opts['first'] + index:016x}"  # as long as a raylet's
        channel = open_aio_channel(opts["gcs"], credentials.token)
        channels.append(channel)
        total = {"CPU": 16.0, "memory": 64.0 * 2**30, f"node:10.0.{index // 250}.{index % 250}": 1.0}
        info = common_pb2.NodeInfo(node_id=node_id, address="127.0.0.1", raylet_port=1, local_port=2,
                                   data_port=3, shm_dir="/dev/shm/none", total=total, available=total,
                                   node_type="sim", versions=versions)
        joined = await gcs_pb2_grpc.GcsStub(channel).RegisterNode(gcs_pb2.RegisterNodeRequest(node=info),
                                                                  timeout=60)
        ping_s = joined.ping_s
        sync = channel.stream_stream("/rayctl.NodeSync/Sync",
                                     request_serializer=gcs_pb2.NodeReport.SerializeToString,
                                     response_deserializer=None)  # raw bytes: views are only counted
        call = await sync.open()
        sent: dict[int, float] = {}

        async def read() -> None:
            while True:
                data = await call.read()
                if data is grpc.aio.EOF:
                    return
                if measuring.is_set():
                    received["bytes"] += len(data)
                if data[:1] == bytes([ACK_TAG]):
                    ack = gcs_pb2.ViewUpdate.FromString(data).ack
                    start = sent.pop(ack, None)
                    if start is not None and measuring.is_set():
                        latencies.append(time.perf_counter() - start)
                        received["acks"] += 1
                elif measuring.is_set():
                    received["views"] += 1

        reader = asyncio.ensure_future(read())
        seq = 0
        available = dict(total)
        next_change = time.monotonic() + rng.expovariate(1 / opts["change_every"]) if opts["busy"] else float("inf")
        last_sent = 0.0
        first = True
        while not stop.is_set():
            now = time.monotonic()
            report = None
            if first or now >= next_change:
                available["CPU"] = float(rng.randint(0, 16))
                seq += 1
                report = gcs_pb2.NodeReport(node_id=node_id, seq=seq, available=available, total=total,
                                            idle_since=0.0, load_changed=first)
                next_change = now + rng.expovariate(1 / opts["change_every"]) if opts["busy"] else float("inf")
                first = False
            elif now - last_sent >= ping_s:
                seq += 1
                report = gcs_pb2.NodeReport(node_id=node_id, seq=seq, ping=True)
            if report is not None:
                sent[seq] = time.perf_counter()
                await call.write(report)
                last_sent = now
            wait = min(next_change, last_sent + ping_s) - time.monotonic()
            try:
                await asyncio.wait_for(stop.wait(), max(0.001, wait))
            except TimeoutError:
                pass
        call.cancel()
        reader.cancel()

    tasks = []
    for i in range(opts["count"]):  # registrations spread over the first second
        tasks.append(asyncio.ensure_future(node(i)))
        if i % 50 == 49:
            await asyncio.sleep(0.02)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "measure"
    measuring.set()
    started = time.perf_counter()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "stop"
    elapsed = time.perf_counter() - started
    measuring.clear()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(t.exception()) for t in tasks if t.exception() is not None]
    for channel in channels:
        await channel.close()
    return {"latencies": latencies, "elapsed": elapsed, "failed": len(errors), "errors": errors[:3],
            **received}


def sim_main(argv: list[str]) -> int:
    opts = json.loads(argv[0])
    result = asyncio.run(_simulate(opts))
    print(json.dumps(result), flush=True)
    return 0


# -- the driver --------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gcs_pid(work: str) -> int:
    out = subprocess.run(["pgrep", "-f", f"runtime.gcs.server.*{work}"], capture_output=True, text=True)
    return int(out.stdout.split()[0])


def run_size(nodes: int, busy: bool, args: argparse.Namespace, reads: bool) -> dict[str, Any]:
    from gcs_snapshot import CLUSTER, redis_and_gcs

    from runtime.gcs.node_sync import view_period_s
    from runtime.gcs.schema import GcsKeys

    work = tempfile.mkdtemp(prefix="rayctl-scale-")
    procs: list[subprocess.Popen[str]] = []
    try:
        with redis_and_gcs(work, death_timeout_s=5.0) as (client, start_gcs, token):
            address = start_gcs()
            pid = gcs_pid(work)
            per = -(-nodes // args.procs)
            for p in range(args.procs):
                count = min(per, nodes - p * per)
                if count <= 0:
                    break
                opts = {"gcs": address, "token_file": os.path.join(work, "token"), "first": p * per,
                        "count": count, "busy": busy, "change_every": args.change_every, "seed": p}
                procs.append(subprocess.Popen(
                    [sys.executable, __file__, "--sim", json.dumps(opts)], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, text=True, cwd=REPO))
            for proc in procs:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + 120
            while client.hlen(GcsKeys(CLUSTER).nodes) < nodes and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(args.warmup)
            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("measure\n")
                proc.stdin.flush()
            time.sleep(args.seconds)
            read_times = time_reads(client, address, token) if reads else {}
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("stop\n")
                proc.stdin.flush()
            cpu1, t1 = cpu_seconds(pid), time.perf_counter()
            results = []
            for proc in procs:
                out, _ = proc.communicate(timeout=120)
                results.append(json.loads(out.strip().splitlines()[-1]))
            alive = count_alive(client)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    latencies = sorted(x for r in results for x in r["latencies"])
    elapsed = max(r["elapsed"] for r in results)
    return {
        "nodes": nodes, "model": "busy" if busy else "idle",
        "reports_per_s": len(latencies) / elapsed,
        "p50_ms": 1e3 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": 1e3 * latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        "gcs_cores": (cpu1 - cpu0) / (t1 - t0),
        "sent_mb_per_s": sum(r["bytes"] for r in results) / elapsed / 1e6,
        "views_per_s": sum(r["views"] for r in results) / elapsed,
        "failed_nodes": sum(r["failed"] for r in results), "alive_at_end": alive,
        "errors": [e for r in results for e in r["errors"]][:3],
        "view_period_s": view_period_s(nodes),
        **read_times,
    }


def count_alive(client: Any) -> int:
    from gcs_snapshot import CLUSTER

    from runtime.gcs.schema import GcsKeys, decode_node
    from runtime.protocol.common_pb2 import NodeInfo

    rows = client.hgetall(GcsKeys(CLUSTER).nodes).values()
    return sum(1 for raw in rows if decode_node(raw).state == NodeInfo.ALIVE)


def time_reads(client: Any, address: str, token: str) -> dict[str, float]:
    """The autoscaler's snapshot read and `rayctl status --json`'s, while the nodes are live."""
    from gcs_snapshot import CLUSTER

    from autoscaler.model import Plan
    from autoscaler.monitor import gcs_nodes
    from autoscaler.observe import read_gcs
    from autoscaler.sdk import get_status
    from autoscaler.status import compose
    from runtime.gcs.schema import GcsKeys, KvKey, KvNamespace

    source = gcs_nodes(address, token)
    view = read_gcs(client, CLUSTER, source)  # warm-up
    snapshot = []
    for _ in range(10):
        start = time.perf_counter()
        view = read_gcs(client, CLUSTER, source)
        snapshot.append((time.perf_counter() - start) * 1e3)
    # the status the monitor would write from this snapshot, then read as `rayctl status --json` does
    status = compose(view, [], Plan(), [], [], time.time())
    client.hset(GcsKeys(CLUSTER).kv(KvNamespace.AUTOSCALER_STATUS), KvKey.STATUS, status.to_json())
    reads = []
    for _ in range(10):
        start = time.perf_counter()
        get_status(address=address, token=token).to_json(indent=2)  # what `rayctl status --json` prints
        reads.append((time.perf_counter() - start) * 1e3)
    return {"snapshot_read_ms": statistics.median(snapshot), "status_json_ms": statistics.median(reads),
            "status_nodes": len(status.nodes)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--sim"]:
        return sim_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="250,500,1000,2000")
    parser.add_argument("--models", default="idle,busy")
    parser.add_argument("--change-every", type=float, default=2.0,
                        help="busy model: mean seconds between a node's resource changes")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--tasks", type=int, default=0, help="the queued-tasks run instead, this many")
    parser.add_argument("--ray-tasks", type=int, default=100_000, help="with --tasks: Ray's count (0: skip)")
    args = parser.parse_args(argv)
    if args.tasks:
        return tasks_main(args)
    sizes = [int(n) for n in args.nodes.split(",")]
    rows = []
    for nodes in sizes:
        for model in args.models.split(","):
            rows.append(run_size(nodes, model == "busy", args, reads=nodes == max(sizes) and model == "busy"))
            print_row(rows[-1], args.markdown, header=len(rows) == 1)
    biggest = [r for r in rows if r["nodes"] == max(sizes)]
    met = all(r["p99_ms"] <= TARGET_P99_MS and r["gcs_cores"] <= TARGET_GCS_CORES for r in biggest)
    print(f"target at {max(sizes)} nodes: p99 <= {TARGET_P99_MS:.0f} ms and GCS <= {TARGET_GCS_CORES} "
          f"core: {'met' if met else 'MISSED'}")
    return 0 if met else 1


def tasks_main(args: argparse.Namespace) -> int:
    from ray_env import ensure_ray_env

    workload = REPO / "bench" / "scale_tasks_workload.py"
    runs = [("rayctl", Path(sys.executable), args.tasks)]
    if args.ray_tasks:
        runs.append(("ray", ensure_ray_env().python, args.ray_tasks))
    results = []
    for backend, python, count in runs:  # one after the other: they share the cores
        done = subprocess.run([str(python), str(workload), "--backend", backend, "--tasks", str(count)],
                              capture_output=True, text=True, timeout=3600, cwd=REPO,
                              env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        if done.returncode != 0:
            print(f"{backend}: failed\n{done.stderr[-2000:]}")
            return 1
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for r in results:
        print(f"{r['backend']}: {r['tasks']:,} tasks in {r['seconds']:.1f} s = {r['tasks_per_s']:,.0f} tasks/s; "
              f"driver peak RSS {r['peak_rss_mib']:,.0f} MiB ({1024 * r['peak_rss_mib'] / r['tasks']:.2f} KiB a task)")
    ours = results[0]
    met = ours["peak_rss_mib"] < TARGET_TASKS_RSS_MIB or ours["tasks"] < 1_000_000
    print(f"target: driver peak RSS under {TARGET_TASKS_RSS_MIB:,.0f} MiB at 1,000,000 tasks: "
          f"{'met' if met else 'MISSED'}")
    return 0 if met else 1


def print_row(r: dict[str, Any], markdown: bool, header: bool) -> None:
    cols = ["nodes", "model", "reports/s", "p50 ms", "p99 ms", "GCS cores", "GCS sends MB/s",
            "view msgs/s", "view period s", "alive at end"]
    values = [r["nodes"], r["model"], f"{r['reports_per_s']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
              f"{r['gcs_cores']:.2f}", f"{r['sent_mb_per_s']:.1f}", f"{r['views_per_s']:.0f}",
              f"{r['view_period_s']:.2f}", f"{r['alive_at_end']}/{r['nodes']}"]
    if markdown:
        if header:
            print("| " + " | ".join(cols) + " |")
            print("|" + "---|" * len(cols))
        print("| " + " | ".join(str(v) for v in values) + " |")
    else:
        print("  ".join(f"{c}={v}" for c, v in zip(cols, values, strict=True)))
    if "snapshot_read_ms" in r:
        print(f"  at {r['nodes']} live nodes: autoscaler snapshot read {r['snapshot_read_ms']:.1f} ms, "
              f"`rayctl status --json` read ({r['status_nodes']} node rows) {r['status_json_ms']:.1f} ms "
              f"(target < {TARGET_READ_MS:.0f} each; medians of 10)")
    if r["failed_nodes"]:
        print(f"  {r['failed_nodes']} simulated nodes failed, e.g. {r['errors'][:2]}")


if __name__ == "__main__":
    sys.exit(main())

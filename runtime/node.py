"""Starting a node's services: Redis + GCS + raylet on the head, a raylet elsewhere. Used by
`runtime.init()` (a private cluster) and by `rayctl start`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import psutil

from runtime import ids
from runtime.auth import create_token_file, read_token_file
from runtime.constants import DEFAULT_OBJECT_STORE_MAX_BYTES, TEMP_DIR
from runtime.private_state import check_private_dir, ensure_private_dir, write_private_file
from runtime.redis_server import redis_argv
from runtime.session import record_pid, record_shm_dir, session_dir_for, wait_for_file
from runtime.shm import shm_root
from runtime.tls import create_cluster_tls

ADDRESS_FILE = "cluster_address.json"


@dataclass
class NodeHandle:
    """What a started node exposes: its GCS address, token file, session dir, processes."""

    gcs_address: str
    token_file: str
    session_dir: str
    node_id: str
    raylet_local_port: int
    shm_dir: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cluster_id: str = ""
    redis_address: str = ""


REDIS_HOST = "127.0.0.1"

def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def default_resources(
    num_cpus: float | None,
    num_gpus: float | None,
    resources: dict[str, float] | None,
    memory: int | None = None,
) -> dict[str, float]:
    total: dict[str, float] = {"CPU": float(os.cpu_count() or 1 if num_cpus is None else num_cpus)}
    if num_gpus:
        total["GPU"] = float(num_gpus)
    total["memory"] = float(
        memory if memory is not None else int(psutil.virtual_memory().total * 0.7)
    )
    total.update({k: float(v) for k, v in (resources or {}).items()})
    return {k: v for k, v in total.items() if v > 0}


def default_object_store_bytes() -> int:
    return int(min(psutil.virtual_memory().total * 0.3, DEFAULT_OBJECT_STORE_MAX_BYTES))


def _spawn(
    args: list[str], log_path: str, session_dir: str, name: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    record_pid(session_dir, name, proc.pid)
    return proc


def start_head(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    spill_capacity_bytes: int | None = None,
    temp_dir: str | None = None,
    parent_pid: int = 0,
    death_timeout_s: float | None = None,
    supervised_services: list[tuple[str, list[str]]] | None = None,
    tls: bool = False,
) -> NodeHandle:
    """Start Redis, the GCS and a raylet. Ports are chosen up front so all three start at once.
    With `tls`, the cluster gets its own CA and every channel runs TLS (runtime/tls.py); the
    material goes in the token file, so it travels wherever the token does.

    With `supervised_services` (name, argv) the GCS and those services run under
    `runtime.supervisor`, which restarts them when they crash. Their argv may use {gcs_address},
    {token_file}, {redis_address}, {cluster_id} and {session_dir}."""
    cluster_id = ids.random_id(4)
    session = session_dir_for(temp_dir or TEMP_DIR, cluster_id)
    token_file = os.path.join(session, "token")
    create_token_file(token_file, create_cluster_tls() if tls else None)
    # Redis serves only the head's own processes (the GCS, the monitor): loopback only.
    redis_port = free_port(REDIS_HOST)
    fields = {"gcs_address": f"{host}:{port or free_port(host)}", "token_file": token_file,
              "redis_address": f"{REDIS_HOST}:{redis_port}", "cluster_id": cluster_id,
              "session_dir": session}
    redis = _redis_argv(session, REDIS_HOST, redis_port, token_file)
    gcs_ready = os.path.join(session, "gcs.ready")
    gcs_args = _gcs_args(fields, gcs_ready, death_timeout_s)
    if supervised_services is None:  # a private cluster: the GCS stops Redis when it stops
        redis_proc = _spawn(redis, os.devnull, session, "redis")
        if parent_pid:
            gcs_args += ["--parent-pid", str(parent_pid), "--owned-redis-pid", str(redis_proc.pid)]
        procs = [redis_proc, _spawn(gcs_args, os.path.join(session, "logs", "gcs.log"), session, "gcs")]
    else:  # Redis and the GCS restarted by the supervisor, Redis from its append-only file
        extra = [(name, [a.format(**fields) for a in argv]) for name, argv in supervised_services]
        procs = [_start_supervisor([("redis", redis), ("gcs", gcs_args), *extra], session)]
    handle = start_raylet(
        gcs_address=fields["gcs_address"],
        token_file=token_file,
        session_dir=session,
        host=host,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        resources=resources,
        object_store_memory=object_store_memory,
        spill_capacity_bytes=spill_capacity_bytes,
        head=True,
        parent_pid=parent_pid,
        wait_procs=procs,
    )
    handle.procs = procs + handle.procs
    handle.cluster_id = cluster_id
    handle.redis_address = fields["redis_address"]
    wait_for_file(gcs_ready, 30, handle.procs)
    return handle


def _redis_argv(session: str, host: str, port: int, token_file: str) -> list[str]:
    """The head's Redis, its password the cluster token, its files in the session dir."""
    password = read_token_file(token_file)
    data_dir = os.path.join(session, "redis")
    return redis_argv(host, port, password, data_dir, os.path.join(session, "logs", "redis.log"))


def _gcs_args(fields: dict[str, str], ready_file: str, death_timeout_s: float | None) -> list[str]:
    host, _, port = fields["gcs_address"].rpartition(":")
    redis_host, _, redis_port = fields["redis_address"].rpartition(":")
    args = [
        sys.executable,
        "-m",
        "runtime.gcs.server",
        "--host",
        host,
        "--port",
        port,
        "--redis-host",
        redis_host,
        "--redis-port",
        redis_port,
        "--token-file",
        fields["token_file"],
        "--cluster-id",
        fields["cluster_id"],
        "--session-dir",
        fields["session_dir"],
        "--ready-file",
        ready_file,
    ]
    if death_timeout_s is not None:
        args += ["--death-timeout-s", str(death_timeout_s)]
    return args


def _start_supervisor(services: list[tuple[str, list[str]]], session: str) -> subprocess.Popen[bytes]:
    """runtime.supervisor running `services` (name, argv), which restarts any of them that
    crashes; returns the supervisor's process."""
    spec = {"session_dir": session, "services": [
        {"name": name, "argv": argv, "log": os.path.join(session, "logs", f"{name}.log")}
        for name, argv in services]}
    spec_path = os.path.join(session, "supervisor.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    return _spawn([sys.executable, "-m", "runtime.supervisor", spec_path],
                  os.path.join(session, "logs", "supervisor.log"), session, "supervisor")


def start_raylet(
    *,
    gcs_address: str,
    token_file: str,
    session_dir: str,
    host: str = "127.0.0.1",
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    spill_capacity_bytes: int | None = None,
    head: bool = False,
    parent_pid: int = 0,
    prestart: int | None = None,
    wait_procs: list[subprocess.Popen[bytes]] | None = None,
    env: dict[str, str] | None = None,
    gcs_lost_timeout_s: float | None = None,
    end_machine_command: str = "",
) -> NodeHandle:
    """Start a raylet and wait until it has joined the GCS (its ready file). With
    `end_machine_command` the raylet runs it after stopping for a lost GCS (head_loss.py)."""
    node_id = ids.random_id(8)
    total = default_resources(num_cpus, num_gpus, resources)
    ready = os.path.join(session_dir, f"raylet-{node_id}.ready")
    shm_base = shm_root()
    record_shm_dir(session_dir, os.path.join(shm_base, f"rayctl-{node_id}"))
    n_prestart = int(total.get("CPU", 0)) if prestart is None else prestart
    args = _raylet_args(
        node_id=node_id,
        host=host,
        gcs_address=gcs_address,
        token_file=token_file,
        total=total,
        store_bytes=object_store_memory or default_object_store_bytes(),
        session_dir=session_dir,
        shm_base=shm_base,
        prestart=min(n_prestart, 8),
        ready_file=ready,
    )
    if head:
        args.append("--head")
    if parent_pid:
        args += ["--parent-pid", str(parent_pid)]
    if gcs_lost_timeout_s is not None:
        args += ["--gcs-lost-timeout-s", str(gcs_lost_timeout_s)]
    if spill_capacity_bytes is not None:
        args += ["--spill-capacity-bytes", str(spill_capacity_bytes)]
    if end_machine_command:
        args += ["--end-machine-command", end_machine_command]
    proc = _spawn(
        args,
        os.path.join(session_dir, "logs", f"raylet-{node_id}.log"),
        session_dir,
        f"raylet-{node_id}",
        env=env,
    )
    info: dict[str, Any] = json.loads(wait_for_file(ready, 30, [proc, *(wait_procs or [])]))
    return NodeHandle(
        gcs_address=gcs_address,
        token_file=token_file,
        session_dir=session_dir,
        node_id=node_id,
        raylet_local_port=info["local_port"],
        shm_dir=info["shm_dir"],
        procs=[proc],
    )


def _raylet_args(*, node_id: str, host: str, gcs_address: str, token_file: str,
                 total: dict[str, float], store_bytes: int, session_dir: str, shm_base: str,
                 prestart: int, ready_file: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "runtime.raylet.main",
        "--node-id",
        node_id,
        "--host",
        host,
        "--gcs-address",
        gcs_address,
        "--token-file",
        token_file,
        "--resources",
        json.dumps(total),
        "--object-store-memory",
        str(store_bytes),
        "--session-dir",
        session_dir,
        "--shm-root",
        shm_base,
        "--prestart",
        str(prestart),
        "--ready-file",
        ready_file,
    ]


def write_address_file(temp_dir: str, handle: NodeHandle) -> str:
    """Let `init(address="auto")` and `rayctl start --address` on this machine find the cluster."""
    ensure_private_dir(temp_dir)
    path = os.path.join(temp_dir, ADDRESS_FILE)
    record = {
        "address": handle.gcs_address,
        "cluster_id": handle.cluster_id,
        "token_file": handle.token_file,
        "session_dir": handle.session_dir,
    }
    write_private_file(path, json.dumps(record))
    return path


def address_file_path(temp_dir: str | None = None) -> str:
    return os.path.join(temp_dir or TEMP_DIR, ADDRESS_FILE)


def read_address_file(temp_dir: str | None = None) -> dict[str, str] | None:
    """The cluster started on this machine, from a temp dir only this user controls."""
    if not check_private_dir(temp_dir or TEMP_DIR):
        return None
    try:
        with open(os.path.join(temp_dir or TEMP_DIR, ADDRESS_FILE)) as f:
            data: dict[str, str] = json.load(f)
            return data
    except FileNotFoundError:
        return None


# --- the clusters of this machine ---------------------------------------------------------------

CLUSTERS_DIR = "clusters"  # <temp_dir>/clusters/<name>.json: heads `rayctl up` made here
START_CLUSTER = "rayctl start"  # the name the `rayctl start --head` cluster goes by


@dataclass(frozen=True, slots=True)
class LocalCluster:
    """A cluster whose head runs on this machine, as `init(address="auto")` finds it."""

    name: str  # the `rayctl up` cluster name, or START_CLUSTER
    address: str
    token_file: str
    session_dir: str


def _registry_root(temp_dir: str | None) -> str:
    # read at the call: a process that changes RAYCTL_TEMP_DIR after importing us means it
    return temp_dir or os.environ.get("RAYCTL_TEMP_DIR") or TEMP_DIR


def register_cluster(name: str, address: str, token_file: str, session_dir: str,
                     temp_dir: str | None = None) -> None:
    """`rayctl up` made a head on this machine (in a slot with a temp dir of its own): let
    `init(address="auto")` and `rayctl job` here find it."""
    root = ensure_private_dir(_registry_root(temp_dir))
    folder = ensure_private_dir(os.path.join(root, CLUSTERS_DIR))
    record = {"name": name, "address": address, "token_file": token_file,
              "session_dir": session_dir}
    write_private_file(os.path.join(folder, f"{name}.json"), json.dumps(record))


def forget_cluster(name: str, temp_dir: str | None = None) -> None:
    try:
        os.unlink(os.path.join(_registry_root(temp_dir), CLUSTERS_DIR, f"{name}.json"))
    except FileNotFoundError:
        pass


def local_clusters(temp_dir: str | None = None) -> list[LocalCluster]:
    """The live clusters of this machine: `rayctl start --head`'s, then those `rayctl up` made
    (a record whose head's processes are all gone is left out)."""
    from runtime.session import session_processes

    root = _registry_root(temp_dir)
    found = []
    info = read_address_file(root)
    if info is not None:
        found.append(LocalCluster(START_CLUSTER, info["address"], info["token_file"],
                                  info.get("session_dir", "")))
    folder = os.path.join(root, CLUSTERS_DIR)
    if check_private_dir(root) and os.path.isdir(folder) and check_private_dir(folder):
        for entry in sorted(os.listdir(folder)):
            try:
                with open(os.path.join(folder, entry)) as f:
                    rec = json.load(f)
                cluster = LocalCluster(rec["name"], rec["address"], rec["token_file"],
                                       rec["session_dir"])
            except (OSError, ValueError, KeyError):
                continue
            if session_processes(cluster.session_dir):
                found.append(cluster)
    return found


def choose_local_cluster(wanted: str, temp_dir: str | None = None) -> LocalCluster | None:
    """The cluster of this machine that `wanted` names: "auto" (the only one), a `rayctl up`
    cluster name, or an address. None when nothing here matches; ConnectionError (naming them
    all and how to choose) when "auto" is ambiguous or finds nothing."""
    clusters = local_clusters(temp_dir)
    if wanted != "auto":
        return next((c for c in clusters if wanted in (c.name, c.address)), None)
    if len(clusters) == 1:
        return clusters[0]
    if not clusters:
        raise ConnectionError(
            "address='auto' but no cluster runs on this machine: run `rayctl start --head` or "
            "`rayctl up`, or pass address='host:port'")
    listed = ", ".join(f"{c.name!r} at {c.address}" for c in clusters)
    raise ConnectionError(
        f"address='auto' matches {len(clusters)} clusters on this machine ({listed}): choose one "
        "with RAYCTL_ADDRESS=<address>, or init(address=<address or cluster name>)")

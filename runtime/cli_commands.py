"""What `rayctl start` and `rayctl stop` do (the CLI in autoscaler/cli/node.py only parses and prints)."""

from __future__ import annotations

import glob
import os
import shutil
from typing import Any

from runtime import ids
from runtime.auth import Credentials, credentials_from_env, read_credentials, write_token_file
from runtime.constants import TEMP_DIR
from runtime.node import (
    ADDRESS_FILE,
    read_address_file,
    start_head,
    start_raylet,
    write_address_file,
)
from runtime.session import all_sessions, session_dir_for, stop_session


def start_head_node(
    *,
    host: str,
    port: int,
    num_cpus: float | None,
    num_gpus: float | None,
    resources: dict[str, float],
    object_store_memory: int | None,
    temp_dir: str | None,
    spill_capacity_bytes: int | None = None,
    supervised_services: list[tuple[str, list[str]]] | None = None,
    tls: bool = False,
) -> dict[str, Any]:
    temp_dir = temp_dir or TEMP_DIR
    handle = start_head(
        tls=tls,
        supervised_services=supervised_services or [],
        host=host,
        port=port,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        resources=resources,
        object_store_memory=object_store_memory,
        spill_capacity_bytes=spill_capacity_bytes,
        temp_dir=temp_dir,
    )
    write_address_file(temp_dir, handle)
    return {
        "redis_address": handle.redis_address,
        "cluster_id": handle.cluster_id,
        "address": handle.gcs_address,
        "token_file": handle.token_file,
        "logs": os.path.join(handle.session_dir, "logs"),
        "node_id": handle.node_id,
    }


def start_worker_node(
    *,
    address: str,
    host: str,
    num_cpus: float | None,
    num_gpus: float | None,
    resources: dict[str, float],
    object_store_memory: int | None,
    token_file: str | None,
    temp_dir: str | None,
    gcs_lost_timeout_s: float | None = None,
    spill_capacity_bytes: int | None = None,
    end_machine_command: str = "",
) -> dict[str, Any]:
    temp_dir = temp_dir or TEMP_DIR
    session = session_dir_for(temp_dir, f"node-{ids.random_id(4)}")
    own_token = os.path.join(session, "token")
    write_token_file(own_token, _find_credentials(token_file, temp_dir, address))
    handle = start_raylet(
        gcs_address=address,
        token_file=own_token,
        session_dir=session,
        host=host,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        resources=resources,
        object_store_memory=object_store_memory,
        spill_capacity_bytes=spill_capacity_bytes,
        gcs_lost_timeout_s=gcs_lost_timeout_s,
        end_machine_command=end_machine_command,
    )
    return {"node_id": handle.node_id, "logs": os.path.join(session, "logs")}


def _find_credentials(token_file: str | None, temp_dir: str, address: str) -> Credentials:
    """The token (and TLS material) for the cluster at `address`: given, from the environment,
    or the one of the cluster started on this machine when `address` is that cluster's (never
    another's)."""
    if token_file:
        return read_credentials(token_file)
    credentials = credentials_from_env()
    if credentials:
        return credentials
    info = read_address_file(temp_dir)
    if info and info.get("address") == address:
        return read_credentials(info["token_file"])
    raise ValueError(
        f"no cluster token for {address}: pass --token-file, or set RAYCTL_TOKEN_FILE to the "
        "head's token file"
    )


def stop_all(*, temp_dir: str | None, grace_s: float) -> int:
    """Stop every session this machine started under `temp_dir`; keep their logs."""
    temp_dir = temp_dir or TEMP_DIR
    stopped = 0
    for session in all_sessions(temp_dir):
        stopped += len(stop_session(session, grace_s))
        for pid_file in glob.glob(os.path.join(session, "pids", "*.pid")):
            os.unlink(pid_file)
        shutil.rmtree(os.path.join(session, "spill"), ignore_errors=True)
    try:
        os.unlink(os.path.join(temp_dir, ADDRESS_FILE))
    except FileNotFoundError:
        pass
    return stopped

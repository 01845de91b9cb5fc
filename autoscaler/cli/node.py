"""`rayctl start` and `rayctl stop`: this machine's node. runtime/cli_commands.py does the work."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from autoscaler.cli.app import app
from autoscaler.cli.errors import config_error_message


def _resources(raw: str | None) -> dict[str, float]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(
            f"--resources must be a JSON object like '{{\"custom\": 2}}': {exc}"
        ) from None
    if not isinstance(value, dict) or not all(isinstance(v, int | float) for v in value.values()):
        raise typer.BadParameter(
            "--resources must be a JSON object of numbers, like '{\"custom\": 2}'"
        )
    return {str(k): float(v) for k, v in value.items()}


@dataclass(frozen=True, slots=True)
class NodeShape:
    """What this node offers: from the flags, else from the autoscaler's RAYCTL_NODE_RESOURCES."""

    num_cpus: float | None
    num_gpus: float | None
    custom: dict[str, float]

    @classmethod
    def of(cls, num_cpus: float | None, num_gpus: float | None, resources: str | None) -> NodeShape:
        custom = _resources(resources)
        if num_cpus is None and num_gpus is None and not custom:
            # the autoscaler hands a launched node its type's resources this way
            given = _resources(os.environ.get("RAYCTL_NODE_RESOURCES"))
            num_cpus, num_gpus = given.pop("CPU", None), given.pop("GPU", None)
            given.pop("memory", None)
            custom = given
        return cls(num_cpus, num_gpus, custom)


@app.command()
def start(
    head: Annotated[
        bool, typer.Option("--head", help="start a head node (Redis, GCS, raylet)")
    ] = False,
    address: Annotated[
        str | None, typer.Option(help="join the cluster at HOST:PORT (or $RAYCTL_HEAD_ADDRESS)")
    ] = None,
    port: Annotated[int, typer.Option(help="GCS port of a head node (0 = any free port)")] = 0,
    node_ip_address: Annotated[
        str,
        typer.Option(
            envvar="RAYCTL_NODE_IP_ADDRESS",  # the node updater sets it to the instance's IP
            help="address this node's services bind to and other nodes reach them at",
        ),
    ] = "127.0.0.1",
    num_cpus: Annotated[float | None, typer.Option(help="CPUs to offer (default: all)")] = None,
    num_gpus: Annotated[float | None, typer.Option(help="GPUs to offer")] = None,
    resources: Annotated[
        str | None, typer.Option(help="custom resources as JSON, e.g. '{\"tpu\": 4}'")
    ] = None,
    object_store_memory: Annotated[int | None, typer.Option(help="object store bytes")] = None,
    spill_capacity_bytes: Annotated[
        int | None, typer.Option(help="most bytes spilled to disk (default: half its free space)")
    ] = None,
    token_file: Annotated[
        str | None, typer.Option(help="cluster token file (or $RAYCTL_TOKEN_FILE)")
    ] = None,
    temp_dir: Annotated[
        str | None, typer.Option(help="where sessions keep logs and pid files")
    ] = None,
    autoscaling_config: Annotated[
        str | None, typer.Option(help="run the autoscaler monitor with this cluster config")
    ] = None,
    block: Annotated[bool, typer.Option(help="stay in the foreground until interrupted")] = False,
    tls: Annotated[
        bool,
        typer.Option(help="a head whose channels all run TLS, under a CA made for the cluster "
                          "(its certificates go in the token file, to joining nodes with it)"),
    ] = False,
    gcs_lost_timeout_s: Annotated[
        float,
        typer.Option(
            envvar="RAYCTL_HEAD_LOST_TIMEOUT_S",  # the installer sets it from the cluster YAML
            help="a worker node stops itself after this long without the head",
        ),
    ] = 60.0,
    end_machine_command: Annotated[
        str,
        typer.Option(
            envvar="RAYCTL_END_MACHINE_COMMAND",  # the installer sets it from the provider
            help="shell command a worker node runs after stopping itself for a lost head "
            "(power off, delete the VM); none by default",
        ),
    ] = "",
) -> None:
    """Start this machine's node: a head (--head) or a worker joining --address."""
    if not (math.isfinite(gcs_lost_timeout_s) and gcs_lost_timeout_s > 0):
        raise typer.BadParameter(
            f"--gcs-lost-timeout-s must be a finite number of seconds > 0, got {gcs_lost_timeout_s}"
        )
    shape = NodeShape.of(num_cpus, num_gpus, resources)
    common: dict[str, Any] = dict(
        host=node_ip_address, num_cpus=shape.num_cpus, num_gpus=shape.num_gpus,
        resources=shape.custom, object_store_memory=object_store_memory, temp_dir=temp_dir,
        spill_capacity_bytes=spill_capacity_bytes,
    )
    if head:
        _start_head(common, port, autoscaling_config, tls)
    else:
        _start_worker(common, address, token_file, (gcs_lost_timeout_s, end_machine_command))
    if block:
        _block_until_stopped(temp_dir)


def _start_head(
    common: dict[str, Any], port: int, autoscaling_config: str | None, tls: bool = False
) -> None:
    from runtime.cli_commands import start_head_node

    services = _monitor_service(autoscaling_config) if autoscaling_config else []
    info = start_head_node(supervised_services=services, port=port, tls=tls, **common)
    address = info["address"]
    lines = [
        f"Started a head node. Cluster address: {address}",
        f"  token file: {info['token_file']} (hand it to joining nodes as RAYCTL_TOKEN_FILE)",
        f"  logs: {info['logs']}",
        '  connect a driver: rt.init(address="auto") on this machine, or '
        f'rt.init(address="{address}") with RAYCTL_TOKEN_FILE set',
        f"  join another node: rayctl start --address {address} --token-file <file>",
    ]
    if autoscaling_config:
        lines.append(f"  autoscaler: monitor running with {autoscaling_config} "
                     f"({info['logs']}/monitor.log)")
    lines.append("  stop: rayctl stop")
    typer.echo("\n".join(lines))


def _start_worker(
    common: dict[str, Any],
    address: str | None,
    token_file: str | None,
    head_loss: tuple[float, str],
) -> None:
    from runtime.cli_commands import start_worker_node

    address = address or os.environ.get("RAYCTL_HEAD_ADDRESS")
    if not address:
        typer.echo(
            "give --head, or --address HOST:PORT (or set RAYCTL_HEAD_ADDRESS) to join a cluster",
            err=True,
        )
        raise typer.Exit(2)
    try:
        info = start_worker_node(address=address, token_file=token_file,
                                 gcs_lost_timeout_s=head_loss[0],
                                 end_machine_command=head_loss[1], **common)
    except (ConnectionError, FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except TimeoutError as exc:  # the raylet never registered: nothing answers there
        typer.echo(f"error: could not join the cluster at {address}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Joined the cluster at {address} as node {info['node_id']}")
    typer.echo(f"  logs: {info['logs']}")


def _block_until_stopped(temp_dir: str | None) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stop(temp_dir=temp_dir)


def _monitor_service(config_path: str) -> list[tuple[str, list[str]]]:
    """The monitor as a service the head's supervisor runs and restarts (the config is checked
    first)."""
    from autoscaler.config import ClusterConfigError, load_config

    path = os.path.abspath(os.path.expanduser(config_path))  # `--x=~/f`: no shell expands it
    try:
        load_config(path)
    except ClusterConfigError as exc:
        typer.echo(f"error: {config_error_message(exc)}", err=True)
        raise typer.Exit(2) from None
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    argv = [sys.executable, "-m", "autoscaler.monitor", "--config", path,
            "--gcs-address", "{gcs_address}", "--token-file", "{token_file}",
            "--redis-address", "{redis_address}", "--cluster-id", "{cluster_id}",
            "--log-dir", "{session_dir}/logs/node-updates"]
    return [("monitor", argv)]


@app.command()
def stop(
    temp_dir: Annotated[str | None, typer.Option(help="the --temp-dir given to start")] = None,
    grace_period: Annotated[float, typer.Option(help="seconds before SIGKILL")] = 5.0,
) -> None:
    """Stop every process that `rayctl start` started on this machine, and nothing else."""
    from runtime.cli_commands import stop_all

    stopped = stop_all(temp_dir=temp_dir, grace_s=grace_period)
    if stopped:
        typer.echo(f"Stopped {stopped} processes.")
    else:
        typer.echo("No rayctl processes were running.")

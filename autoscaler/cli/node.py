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
    include_dashboard: Annotated[
        bool, typer.Option(help="run the head's web service (Jobs API, metrics, state)")
    ] = True,
    dashboard_host: Annotated[
        str, typer.Option(help="address the head's web service binds to (token required)")
    ] = "127.0.0.1",
    dashboard_port: Annotated[
        int | None,
        typer.Option(help="the head's web service port (default 8265, or a free one when 8265 "
                          "is taken; 0 = any free port)"),
    ] = None,
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
        web = _web_service(dashboard_host, dashboard_port) if include_dashboard else None
        _start_head(common, port, autoscaling_config, tls, web)
    else:
        _start_worker(common, address, token_file, (gcs_lost_timeout_s, end_machine_command))
    if block:
        _block_until_stopped(temp_dir)


def _start_head(
    common: dict[str, Any], port: int, autoscaling_config: str | None, tls: bool = False,
    web: WebService | None = None,
) -> None:
    from runtime.cli_commands import start_head_node

    services = _monitor_service(autoscaling_config) if autoscaling_config else []
    if web is not None:
        services.append(("web", web.argv))
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
    if web is not None:
        scheme = "https" if tls else "http"
        lines.append(f"  web service: {scheme}://{web.host}:{web.port} (token required) "
                     f"— jobs: rayctl job submit -- python script.py; /metrics")
        if web.note:
            lines.append(f"    ({web.note})")
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


DEFAULT_DASHBOARD_PORT = 8265  # Ray's


@dataclass(frozen=True, slots=True)
class WebService:
    host: str
    port: int
    note: str  # why the port is not the one asked for

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "autoscaler.web.server", "--gcs-address", "{gcs_address}",
                "--token-file", "{token_file}", "--redis-address", "{redis_address}",
                "--cluster-id", "{cluster_id}", "--session-dir", "{session_dir}",
                "--host", self.host, "--port", str(self.port)]


def _web_service(host: str, port: int | None) -> WebService:
    """The web service's port, chosen before anything starts: the one given (refused at once
    when taken), else Ray's 8265, else (taken) any free one."""
    import socket

    def free(p: int) -> int | None:
        with socket.socket() as s:
            try:
                s.bind((host, p))
            except OSError:
                return None
            return int(s.getsockname()[1])

    if port is not None and not 0 <= port <= 65535:
        raise typer.BadParameter(f"--dashboard-port must be 0 to 65535, got {port}")
    if port:
        if free(port) is None:
            typer.echo(f"error: --dashboard-port {port} is in use on {host}: pick another "
                       "(0 = any free port) or pass --no-include-dashboard", err=True)
            raise typer.Exit(2)
        return WebService(host, port, "")
    if port is None and free(DEFAULT_DASHBOARD_PORT) is not None:
        return WebService(host, DEFAULT_DASHBOARD_PORT, "")
    chosen = free(0)
    if chosen is None:
        typer.echo(f"error: cannot bind the web service to {host}: pass --dashboard-host", err=True)
        raise typer.Exit(2)
    note = "" if port == 0 else f"port {DEFAULT_DASHBOARD_PORT} is in use: took a free one"
    return WebService(host, chosen, note)


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

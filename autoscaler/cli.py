"""The `rayctl` command line. Each command parses, calls one function, and renders."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="rayctl: a Ray-style runtime and the cluster manager that grows and shrinks it.",
)


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
    gcs_lost_timeout_s: Annotated[
        float, typer.Option(help="a worker node stops itself after this long without the head")
    ] = 60.0,
) -> None:
    """Start this machine's node: a head (--head) or a worker joining --address."""
    from runtime.cli_commands import start_head_node, start_worker_node

    custom = _resources(resources)
    if num_cpus is None and num_gpus is None and not custom:
        # the autoscaler hands a launched node its type's resources this way
        node_resources = _resources(os.environ.get("RAYCTL_NODE_RESOURCES"))
        num_cpus = node_resources.pop("CPU", None)
        num_gpus = node_resources.pop("GPU", None)
        node_resources.pop("memory", None)
        custom = node_resources
    if head:
        services = _monitor_service(autoscaling_config) if autoscaling_config else []
        info = start_head_node(
            supervised_services=services,
            host=node_ip_address,
            port=port,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            resources=custom,
            object_store_memory=object_store_memory,
            temp_dir=temp_dir,
        )
        typer.echo(f"Started a head node. Cluster address: {info['address']}")
        typer.echo(
            f"  token file: {info['token_file']} (hand it to joining nodes as RAYCTL_TOKEN_FILE)"
        )
        typer.echo(f"  logs: {info['logs']}")
        typer.echo(
            '  connect a driver: rt.init(address="auto") on this machine, or '
            f'rt.init(address="{info["address"]}") with RAYCTL_TOKEN_FILE set'
        )
        typer.echo(
            "  join another node: rayctl start --address "
            + info["address"]
            + " --token-file <file>"
        )
        if autoscaling_config:
            typer.echo(f"  autoscaler: monitor running with {autoscaling_config} ({info['logs']}/monitor.log)")
        typer.echo("  stop: rayctl stop")
    else:
        address = address or os.environ.get("RAYCTL_HEAD_ADDRESS")
        if not address:
            typer.echo(
                "give --head, or --address HOST:PORT (or set RAYCTL_HEAD_ADDRESS) to join a cluster",
                err=True,
            )
            raise typer.Exit(2)
        try:
            info = start_worker_node(
                address=address,
                host=node_ip_address,
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                resources=custom,
                object_store_memory=object_store_memory,
                token_file=token_file,
                temp_dir=temp_dir,
                gcs_lost_timeout_s=gcs_lost_timeout_s,
            )
        except (ConnectionError, FileNotFoundError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except TimeoutError as exc:  # the raylet never registered: nothing answers there
            typer.echo(f"error: could not join the cluster at {address}: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"Joined the cluster at {address} as node {info['node_id']}")
        typer.echo(f"  logs: {info['logs']}")
    if block:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            stop(temp_dir=temp_dir)


def _monitor_service(config_path: str) -> list[tuple[str, list[str]]]:
    """The monitor as a service the head's supervisor runs and restarts (the config is checked first)."""
    from autoscaler.config import ClusterConfigError, load_config

    path = os.path.abspath(os.path.expanduser(config_path))  # `--x=~/f`: no shell expands it
    try:
        load_config(path)
    except ClusterConfigError as exc:
        typer.echo(f"error: {cli_launcher.config_error_message(exc)}", err=True)
        raise typer.Exit(2) from None
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    argv = [sys.executable, "-m", "autoscaler.monitor", "--config", path, "--gcs-address", "{gcs_address}",
            "--token-file", "{token_file}", "--redis-address", "{redis_address}", "--cluster-id", "{cluster_id}",
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


@app.command()
def status(
    config: Annotated[
        str | None, typer.Argument(help="cluster config: ask that cluster's head (as `rayctl up` made it)")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="GCS HOST:PORT (default: this machine's cluster)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="per-instance history")] = False,
) -> None:
    """Nodes, resources, pending demand and the autoscaler's recent decisions."""
    from dataclasses import asdict

    from autoscaler.sdk import get_status
    from autoscaler.status import render

    if config and address is None:
        _status_on_head(config, as_json=as_json, verbose=verbose)
        return
    try:
        current = get_status(address=address)
    except (ConnectionError, LookupError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(asdict(current), indent=2, sort_keys=True))
    else:
        typer.echo(render(current, verbose=verbose))


def _status_on_head(config_path: str, *, as_json: bool, verbose: bool) -> None:
    """`rayctl status CONFIG`: run `rayctl status` on that cluster's head and relay it."""
    from autoscaler.cluster_head import LaunchError
    from autoscaler.commands import status_on_head
    from autoscaler.config import ClusterConfigError
    from autoscaler.launcher import load_cluster
    from providers.base import ProviderError

    try:
        result = status_on_head(load_cluster(config_path), as_json=as_json, verbose=verbose)
    except ClusterConfigError as exc:
        typer.echo(f"error: {cli_launcher.config_error_message(exc)}", err=True)
        raise typer.Exit(1) from None
    except (LaunchError, ProviderError, FileNotFoundError, ConnectionError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(result.output, nl=False)
    raise typer.Exit(result.exit_code)


# The cluster launcher's commands (up, down, exec, attach, submit, rsync-*, get-head-ip, monitor).
from autoscaler import cli_launcher  # noqa: E402

cli_launcher.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""`rayctl job submit|status|logs|stop|list|delete`: Ray's `ray job` commands against the head's
web service (autoscaler/web/client.py finds it and its token)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand

from autoscaler.cli.app import app

T = TypeVar("T")
job_app = typer.Typer(no_args_is_help=True, help="Submit jobs to a cluster and follow them "
                      "(Ray's `ray job`; Ray's own JobSubmissionClient works too).")
app.add_typer(job_app, name="job")

AddressOpt = Annotated[str | None, typer.Option(
    "--address", help="the head's web service, http(s)://HOST:PORT (default: "
    "$RAYCTL_DASHBOARD_ADDRESS, else this machine's cluster)")]
ConfigOpt = Annotated[str | None, typer.Option(
    "--cluster-config", "-c", help="a cluster config `rayctl up` started (its head's service)")]
IdArg = Annotated[str, typer.Argument(help="the job's submission id")]


def _run(address: str | None, config: str | None,
         act: Callable[[Any], Awaitable[T]]) -> T:
    from autoscaler.web.client import WebClient, WebError, reach

    async def go(target: Any) -> T:
        async with WebClient(target) as client:
            return await act(client)

    try:
        with reach(address, config) as target:
            return asyncio.run(go(target))
    except WebError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


class _SplitAtDashes(TyperCommand):
    """`rayctl job submit [options] [CONFIG] -- ENTRYPOINT...`: what follows `--` is the
    entrypoint, kept whole (its own options are not ours)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["entrypoint"] = args[cut + 1:]
            args = args[:cut]
        return super().parse_args(ctx, args)


def _json_option(text: str | None, what: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        typer.echo(f"error: {what} must be JSON: {exc}", err=True)
        raise typer.Exit(2) from None


@job_app.command("submit", cls=_SplitAtDashes)
def submit(
    ctx: typer.Context,
    words: Annotated[list[str] | None, typer.Argument(
        help="[CONFIG] -- ENTRYPOINT: the shell command to run, after `--`")] = None,
    address: AddressOpt = None,
    submission_id: Annotated[str | None, typer.Option(help="the job's id (default: made up)")] = None,
    working_dir: Annotated[str | None, typer.Option(
        help="a local directory uploaded and used as the job's working directory")] = None,
    runtime_env_json: Annotated[str | None, typer.Option(help="runtime_env as JSON")] = None,
    metadata_json: Annotated[str | None, typer.Option(help="metadata as a JSON object")] = None,
    entrypoint_num_cpus: Annotated[float | None, typer.Option(help="CPUs for the entrypoint")] = None,
    entrypoint_num_gpus: Annotated[float | None, typer.Option(help="GPUs for the entrypoint")] = None,
    entrypoint_memory: Annotated[int | None, typer.Option(help="memory bytes for the entrypoint")] = None,
    entrypoint_resources: Annotated[str | None, typer.Option(
        help="custom resources for the entrypoint, as JSON")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="return once submitted")] = False,
) -> None:
    """Submit a job: `rayctl job submit [--address URL | CONFIG] -- python script.py`."""
    entrypoint = ctx.meta.get("entrypoint") or []
    positional = list(words or [])
    if not entrypoint:  # no `--`: every word is the entrypoint
        entrypoint, positional = positional, []
    if len(positional) > 1 or not entrypoint:
        typer.echo("error: give the entrypoint after `--`, e.g. `rayctl job submit -- python "
                   "script.py` (before it, at most one cluster config)", err=True)
        raise typer.Exit(2)
    config = positional[0] if positional else None
    runtime_env = _json_option(runtime_env_json, "--runtime-env-json") or {}
    body: dict[str, Any] = {
        "entrypoint": " ".join(entrypoint) if len(entrypoint) > 1 else entrypoint[0],
        "submission_id": submission_id, "metadata": _json_option(metadata_json, "--metadata-json"),
        "entrypoint_num_cpus": entrypoint_num_cpus, "entrypoint_num_gpus": entrypoint_num_gpus,
        "entrypoint_memory": entrypoint_memory,
        "entrypoint_resources": _json_option(entrypoint_resources, "--entrypoint-resources"),
    }

    async def act(client: Any) -> int:
        if working_dir:
            runtime_env["working_dir"] = await _upload(client, working_dir, runtime_env)
        body["runtime_env"] = runtime_env or None
        reply = await client.call("POST", "/api/jobs/",
                                  body={k: v for k, v in body.items() if v is not None})
        sid = reply["submission_id"]
        typer.echo(f"Job '{sid}' submitted successfully.")
        if no_wait:
            typer.echo(f"  status: rayctl job status {sid}\n  logs:   rayctl job logs --follow {sid}"
                       f"\n  stop:   rayctl job stop {sid}")
            return 0
        typer.echo("Following its logs until it ends (Ctrl-C leaves it running):")
        return await _follow_to_end(client, sid)

    raise typer.Exit(_run(address, config, act))


async def _upload(client: Any, path: str, runtime_env: dict[str, Any]) -> str:
    """Zip `path` as the runtime does and upload it once (named by its content)."""
    from runtime.runtime_env import zip_directory
    from runtime.runtime_env.packages import content_uri

    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(full):
        typer.echo(f"error: --working-dir {path!r} is not a directory", err=True)
        raise typer.Exit(2)
    data = await asyncio.to_thread(zip_directory, full, top="",
                                   excludes=tuple(runtime_env.get("excludes", ())))
    uri = content_uri(data)
    name = uri.removeprefix("gcs://")
    if await client.call("GET", f"/api/packages/gcs/{name}", ok_statuses=(200, 404)) == 404:
        await client.call("PUT", f"/api/packages/gcs/{name}", data=data)
    return uri


async def _follow_to_end(client: Any, sid: str) -> int:
    async for text in client.follow(sid):
        sys.stdout.write(text)
        sys.stdout.flush()
    job = await client.call("GET", f"/api/jobs/{sid}")
    status = job["status"]
    typer.echo(f"Job '{sid}' {status.lower()}" + (f": {job['message'].splitlines()[0]}"
                                                  if status == "FAILED" and job.get("message")
                                                  else "."))
    return 1 if status == "FAILED" else 0


@job_app.command("status")
def status(submission_id: IdArg, address: AddressOpt = None, cluster_config: ConfigOpt = None,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A job's status and message."""
    job = _run(address, cluster_config,
               lambda c: c.call("GET", f"/api/jobs/{submission_id}"))
    if as_json:
        typer.echo(json.dumps(job, indent=2))
        return
    typer.echo(f"Job '{submission_id}': {job['status']}")
    if job.get("message"):
        typer.echo(f"  {job['message']}")


@job_app.command("logs")
def logs(submission_id: IdArg, address: AddressOpt = None, cluster_config: ConfigOpt = None,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="until the job ends")] = False,
         ) -> None:
    """A job's output so far (or, with --follow, as it comes until the job ends)."""
    async def act(client: Any) -> None:
        if follow:
            async for text in client.follow(submission_id):
                sys.stdout.write(text)
                sys.stdout.flush()
        else:
            reply = await client.call("GET", f"/api/jobs/{submission_id}/logs")
            sys.stdout.write(reply["logs"])

    _run(address, cluster_config, act)


@job_app.command("stop")
def stop(submission_id: IdArg, address: AddressOpt = None, cluster_config: ConfigOpt = None) -> None:
    """Stop a job: SIGTERM to its entrypoint's process group, SIGKILL after 3 s."""
    reply = _run(address, cluster_config,
                 lambda c: c.call("POST", f"/api/jobs/{submission_id}/stop"))
    typer.echo(f"Job '{submission_id}' " + ("stopped." if reply["stopped"] else "had already ended."))


@job_app.command("delete")
def delete(submission_id: IdArg, address: AddressOpt = None,
           cluster_config: ConfigOpt = None) -> None:
    """Delete an ended job's record and logs."""
    _run(address, cluster_config, lambda c: c.call("DELETE", f"/api/jobs/{submission_id}"))
    typer.echo(f"Job '{submission_id}' deleted.")


@job_app.command("list")
def list_jobs(address: AddressOpt = None, cluster_config: ConfigOpt = None,
              as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every submitted job."""
    from autoscaler.cli.tables import print_rows

    jobs = _run(address, cluster_config, lambda c: c.call("GET", "/api/jobs/"))
    if as_json:
        typer.echo(json.dumps(jobs, indent=2))
        return
    print_rows([{"submission_id": j["submission_id"], "status": j["status"],
                 "entrypoint": j["entrypoint"], "start_time": _when(j.get("start_time")),
                 "end_time": _when(j.get("end_time"))} for j in jobs],
               empty="No submitted jobs.")


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")

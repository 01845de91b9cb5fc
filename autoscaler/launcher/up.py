"""`rayctl up`: validate -> bootstrap the provider -> find or create the head (its launch-config
hash decides whether it is replaced) -> the node updater on the head (file mounts, the resolved
config, for clouds the SSH key and a rayctl wheel; setup) -> head_start_ray_commands, which start
the head's services and the autoscaler monitor.

What to do is decided by pure functions (`decide_head`, `decide_work`); `up` acts. A second `up`
with the same config finds the head current and running and changes nothing.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.config import ClusterConfig, ClusterConfigError, load_config, validate_config
from autoscaler.failover import LaunchRequest, launch_with_failover
from autoscaler.launcher.head import (
    EnvRunner,
    HeadRecord,
    HeadServices,
    LaunchError,
    cluster_instances,
    find_head,
    head_ip,
    is_local,
    launcher_dir,
    node_extra_env,
    open_provider,
    read_head_services,
    save_record,
)
from autoscaler.launcher.progress import Progress
from autoscaler.launcher.ship import prepare_shipment
from autoscaler.launcher.updater import (
    SETUP_HASH_PATH,
    NodeUpdater,
    UpdatePlan,
    mount_digests,
    node_env,
    node_ip_address,
    plan_update,
    setup_hash,
    tail_lines,
)
from providers.base import (
    NODE_KIND_HEAD,
    TAG_LAUNCH_HASH,
    TAG_NAME,
    TAG_NODE_KIND,
    CommandRunner,
    Instance,
    NodeProvider,
    ProviderError,
)
from providers.registry import REGISTRY_KEYS

HEAD_READY_TIMEOUT_S = 300.0
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 60.0


class HeadAction(enum.StrEnum):
    LAUNCH = "launch"  # no head yet
    REPLACE = "replace"  # a head from another launch config: terminate it, launch a new one
    REUSE = "reuse"


class Health(enum.StrEnum):
    DOWN = "down"  # no head session, or none of its processes alive
    DEGRADED = "degraded"  # some of them died (the supervisor gave up on one)
    RUNNING = "running"


@dataclass(frozen=True, slots=True)
class UpOptions:
    yes: bool = False
    restart: bool = True  # False: --no-restart
    restart_only: bool = False
    use_config_cache: bool = True


@dataclass(frozen=True, slots=True)
class Work:
    """What `up` does on a head it has: each flag one step."""

    sync_and_setup: bool  # the node updater without start commands (setup only if changed)
    sync_only: bool  # --restart-only: file mounts, no setup
    stop_first: bool  # the head's services run and are about to be restarted
    start: bool

    @property
    def nothing(self) -> bool:
        return not (self.sync_and_setup or self.sync_only or self.stop_first or self.start)


@dataclass(frozen=True, slots=True)
class UpResult:
    cluster_name: str
    head_id: str
    head_ip: str
    address: str
    token_file: str
    changed: bool
    actions: tuple[str, ...]
    log_path: str
    web_url: str = ""  # the head's web service, when the head runs on this machine


# --- decisions (pure) --------------------------------------------------------------------------


def apply_overrides(
    config: ClusterConfig,
    *,
    cluster_name: str | None = None,
    min_workers: int | None = None,
    max_workers: int | None = None,
    source: str = "",
) -> ClusterConfig:
    """The command line's --cluster-name / --min-workers / --max-workers on top of the file."""
    if cluster_name is None and min_workers is None and max_workers is None:
        return config
    raw: dict[str, Any] = config.to_dict()
    workers = [n for n in raw["available_node_types"] if n != config.head_node_type]
    if cluster_name is not None:
        raw["cluster_name"] = cluster_name
    if max_workers is not None:
        raw["max_workers"] = max_workers
        for name in workers:
            entry = raw["available_node_types"][name]
            entry["max_workers"] = min(entry.get("max_workers", max_workers), max_workers)
    if min_workers is not None:
        if len(workers) != 1:
            raise ClusterConfigError(
                [f"--min-workers: the config has {len(workers)} worker types "
                 f"({', '.join(workers) or 'none'}); set min_workers on each in the file"],
                source,
            )
        raw["available_node_types"][workers[0]]["min_workers"] = min_workers
    return validate_config(raw, source=source)


def decide_head(head: Instance | None, launch_hash: str) -> HeadAction:
    if head is None:
        return HeadAction.LAUNCH
    if head.tags.get(TAG_LAUNCH_HASH) != launch_hash:
        return HeadAction.REPLACE
    return HeadAction.REUSE


def head_health(services: HeadServices | None) -> Health:
    if services is None or not services.alive:
        return Health.DOWN
    return Health.RUNNING if services.running else Health.DEGRADED


def decide_work(
    action: HeadAction,
    health: Health,
    node_setup_hash: str,
    wanted_setup_hash: str,
    options: UpOptions,
) -> Work:
    """Ray's semantics: --no-restart syncs and sets up but starts nothing; --restart-only skips
    setup; a current, running head is left alone. Whatever still runs on the head is stopped
    before a start, so a restart never leaves two head sessions side by side."""
    if action is not HeadAction.REUSE:
        return Work(True, False, False, options.restart)
    some_alive = health is not Health.DOWN
    if options.restart_only:
        return Work(False, True, some_alive, True)
    if not options.restart:
        return Work(True, False, False, False)
    if health is Health.RUNNING and node_setup_hash.strip() == wanted_setup_hash:
        return Work(False, False, False, False)
    return Work(True, False, some_alive, True)


# --- acting ----------------------------------------------------------------------------------------


def load_cluster(
    path: str | None,
    *,
    cluster_name: str | None = None,
    min_workers: int | None = None,
    max_workers: int | None = None,
) -> ClusterConfig:
    """Read, validate and override; raises ClusterConfigError listing every problem."""
    config = load_config(path)
    return apply_overrides(
        config, cluster_name=cluster_name, min_workers=min_workers, max_workers=max_workers,
        source=path or "the packaged local default",
    )


def up(
    config: ClusterConfig,
    options: UpOptions,
    progress: Progress,
    confirm: Callable[[str], bool] = lambda _: True,
) -> UpResult:
    """Bring the cluster to `config`: the head launched, set up and started. Ctrl-C leaves
    nothing unrecorded: providers record an instance when it is launched."""
    with progress.step(f"Bootstrapping the {config.provider_type} provider"):
        resolved, provider = bootstrap(config, options.use_config_cache)
    launch_hash = resolved.launch_hash(resolved.head_node_type)
    old = find_head(cluster_instances(provider, resolved.cluster_name))
    action = decide_head(old, launch_hash)
    head = _ensure_head(resolved, provider, old, action, launch_hash, options, progress, confirm)
    runner = EnvRunner(provider.command_runner(head), _head_env(resolved))
    log_dir = launcher_dir(resolved.cluster_name) / "logs"
    with progress.step(f"Preparing files for head {head.id}"):
        shipment = prepare_shipment(resolved, launcher_dir(resolved.cluster_name), runner.inner)
        plan = shipment.apply(plan_update(resolved, head.id, resolved.head_node_type, is_head=True,
                                          node_ip=node_ip_address(runner, head)))
    with progress.step(f"Checking head {head.id}"):
        runner.wait_ready(HEAD_READY_TIMEOUT_S)
        services = read_head_services(runner)
        stored = runner.run(f"cat {SETUP_HASH_PATH} 2>/dev/null || true", timeout_s=60).output
    wanted = setup_hash(plan, mount_digests(plan.file_mounts))
    work = decide_work(action, head_health(services), stored, wanted, options)
    actions = [action.value] if action is not HeadAction.REUSE else []
    if work.nothing:
        progress.note(f"head {head.id} is current and its services are running: nothing changed")
    else:
        actions += _update_head(runner, plan, work, log_dir, progress)
        services = _read_services(runner, progress) if work.start else services
    record = _record(resolved, head, launch_hash, services)
    return UpResult(
        resolved.cluster_name, head.id, head_ip(head), record.address if record else "",
        record.token_file if record else "", bool(actions), tuple(actions),
        str(log_dir / f"{head.id}.log"),
        _web_url(record.session_dir) if record and is_local(resolved) else "",
    )


def _web_url(session_dir: str, wait_s: float = 15.0) -> str:
    """The URL of the web service of a head on this machine ("" when it does not come up)."""
    import time

    from autoscaler.web.server import read_web_file

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        info = read_web_file(session_dir)
        if info is not None:
            return str(info["url"])
        time.sleep(0.1)
    return ""


def bootstrap(config: ClusterConfig, use_cache: bool) -> tuple[ClusterConfig, NodeProvider]:
    """The config with the provider section the provider resolved. The resolution is cached
    per input config, so a later `up` hashes the same head even if the cloud's answer moved
    (a newer image, another subnet); --no-config-cache resolves afresh. The provider returned
    is the bootstrapped one (a cloud provider keeps what it resolved, e.g. the SSH key)."""
    provider = open_provider(config)
    try:
        # the provider resolves its own section; the registry's keys (type, module) are ours
        named = {k: v for k, v in config.provider.items() if k in REGISTRY_KEYS}
        fresh = {**provider.bootstrap(), **named}
    except ProviderError as exc:
        raise LaunchError(f"provider bootstrap failed: {exc}") from exc
    cache = launcher_dir(config.cluster_name) / "bootstrap-cache.json"
    key = json.dumps(config.to_dict(), sort_keys=True)
    cached = (_read_cache(cache) if use_cache else {}).get(key)
    # Where this machine keeps the cluster's state (`state_dir`: RAYCTL_LOCAL_STATE_DIR, ...)
    # comes from the environment, which `down` and `exec` read afresh: a resolution cached
    # under another environment would send the head's monitor to instances `down` never sees.
    usable = isinstance(cached, dict) and cached.get("state_dir") == fresh.get("state_dir")
    resolved_provider = cached if usable else fresh
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({key: resolved_provider}))
    return validate_config({**config.to_dict(), "provider": resolved_provider}), provider


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _head_env(config: ClusterConfig) -> dict[str, str]:
    """The head's type shape for `rayctl start` (as the monitor hands workers theirs)."""
    env = node_extra_env(config)
    resources = config.node_type(config.head_node_type).resources
    if resources is not None:
        env["RAYCTL_NODE_RESOURCES"] = json.dumps({k: float(v) for k, v in resources.items()})
    return env


def _ensure_head(
    config: ClusterConfig,
    provider: NodeProvider,
    old: Instance | None,
    action: HeadAction,
    launch_hash: str,
    options: UpOptions,
    progress: Progress,
    confirm: Callable[[str], bool],
) -> Instance:
    if action is HeadAction.REUSE:
        assert old is not None
        progress.note(f"head {old.id} exists with this launch config: reusing it")
        return old
    question = (
        f"Launch a new cluster {config.cluster_name!r} ({config.provider_type})?"
        if old is None else
        f"Head {old.id} was launched from another config: terminate it and launch a new one?"
    )
    if not options.yes and not confirm(question):
        raise LaunchError("aborted: nothing was changed")
    if old is not None:
        with progress.step(f"Terminating outdated head {old.id}"):
            provider.terminate([old.id])
    with progress.step(f"Launching head node ({config.head_node_type})"):
        head = launch_head(config, provider, launch_hash)
    progress.note(f"head {head.id} launched")
    return head


def launch_head(config: ClusterConfig, provider: NodeProvider, launch_hash: str) -> Instance:
    """One head, through the autoscaler's offering-failover loop. The request id is fixed per
    launch config, so a retried `up` gets the same instance back instead of a second head."""
    tags = {
        TAG_NODE_KIND: NODE_KIND_HEAD,
        TAG_LAUNCH_HASH: launch_hash,
        TAG_NAME: f"rayctl-{config.cluster_name}-head",
    }
    request_id = f"{config.cluster_name}-head-{launch_hash[:12]}"
    try:
        offerings = tuple(provider.offerings(config.head_node_type))
    except ProviderError as exc:
        raise LaunchError(f"cannot launch the head node: {exc}") from exc
    request = LaunchRequest(config.head_node_type, 1, request_id, offerings, tags,
                            all_or_nothing=True)
    outcome = launch_with_failover(provider, request)
    if outcome.instances:
        return outcome.instances[0]
    if outcome.error is not None:
        raise LaunchError(f"cannot launch the head node: {outcome.error}") from outcome.error
    last = outcome.capacity_failures[-1][1] if outcome.capacity_failures else ""
    raise LaunchError(f"cannot launch the head node: {last or 'the provider launched nothing'}")


def _update_head(
    runner: EnvRunner, plan: UpdatePlan, work: Work, log_dir: Path, progress: Progress
) -> list[str]:
    done: list[str] = []
    if work.sync_and_setup:
        with progress.step("Syncing files and running setup on the head"):
            result = NodeUpdater(runner, plan, log_dir=log_dir, restart=False,
                                 setup_retries=0).update()
            if not result.ok:
                tail = "\n".join(f"    {line}" for line in result.output_tail)
                raise LaunchError(f"{result.message}\n{tail}\n  full log: {result.log_path}")
        progress.note("setup skipped: unchanged since the last setup" if result.setup_skipped
                      else "setup done")
        done.append("sync" if result.setup_skipped else "setup")
    if work.sync_only:
        with progress.step("Syncing files to the head (--restart-only: no setup)"):
            for remote, local in plan.file_mounts:
                runner.put_file(local, remote)
        done.append("sync")
    if work.stop_first:
        with progress.step("Stopping the head's services"):
            stopped = runner.run("rayctl stop", timeout_s=STOP_TIMEOUT_S)
            _check("rayctl stop", stopped.exit_code, stopped.output, log_dir, plan)
        done.append("stop")
    if work.start:
        with progress.step("Starting the head's services (head_start_ray_commands)"):
            run_start_commands(runner, plan, log_dir)
        done.append("start")
    return done


def run_start_commands(runner: CommandRunner, plan: UpdatePlan, log_dir: Path) -> None:
    env = node_env(plan, "")
    for command in plan.start_commands:
        ran = runner.run(command, env=env, timeout_s=START_TIMEOUT_S)
        _check(command, ran.exit_code, ran.output, log_dir, plan)


def _check(command: str, code: int, output: str, log_dir: Path, plan: UpdatePlan) -> None:
    log_path = log_dir / f"{plan.instance_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"==> [start] $ {command}\n{output}")
        if not output.endswith("\n"):
            log.write("\n")
    if code != 0:
        tail = "\n".join(f"    {line}" for line in tail_lines(output))
        raise LaunchError(
            f"`{command}` failed on head {plan.instance_id} (exit code {code}):\n{tail}\n"
            f"  full log: {log_path}"
        )


def _read_services(runner: EnvRunner, progress: Progress) -> HeadServices:
    with progress.step("Reading the head's address"):
        services = read_head_services(runner)
    if services is None:
        raise LaunchError(
            "the head's start commands succeeded but no head session was found on it: "
            "head_start_ray_commands must run `rayctl start --head --autoscaling-config=...`"
        )
    return services


def _record(
    config: ClusterConfig, head: Instance, launch_hash: str, services: HeadServices | None
) -> HeadRecord | None:
    if services is None:
        return None
    record = HeadRecord(
        config.cluster_name, head.id, head_ip(head), services.address, services.token_file,
        services.session_dir, config.provider_type, launch_hash,
    )
    save_record(record)
    if is_local(config):  # its head runs here: `init(address="auto")` and `rayctl job` find it
        from runtime.node import register_cluster

        register_cluster(config.cluster_name, services.address, services.token_file,
                         services.session_dir)
    return record


def connect_help(result: UpResult, config_arg: str, *, local: bool) -> list[str]:
    """How to use the cluster, as the last lines `up` prints (commands that work as printed)."""
    from autoscaler.config import default_config_path

    cfg = config_arg or str(default_config_path())
    lines = [f"Cluster {result.cluster_name!r} is up. Head: {result.head_id} ({result.head_ip})"]
    if result.address and local:
        lines += [
            "  Connect a driver on this machine (when it is the only cluster here; else pass "
            f"address=\"{result.cluster_name}\"):",
            '    python -c \'import runtime as rt; rt.init(address="auto")\'',
            f"  Status:      rayctl status --address {result.address}",
        ]
        if result.web_url:
            lines += [
                f"  Web service: {result.web_url} (token: the first line of {result.token_file})",
                "  Submit jobs: rayctl job submit -- python script.py   (also Ray's "
                "JobSubmissionClient with an Authorization: Bearer header)",
            ]
    else:
        lines += [
            f"  GCS on the head: {result.address or 'not started'}; drivers run there "
            f"(`rayctl submit {cfg} script.py`)",
            f"  Status:      rayctl exec {cfg} 'rayctl status'",
        ]
    lines += [
        f"  Run on head: rayctl exec {cfg} 'CMD'   or   rayctl submit {cfg} script.py",
        f"  Shell:       rayctl attach {cfg}",
        f"  Autoscaler:  rayctl monitor {cfg}",
        f"  Tear down:   rayctl down {config_arg + ' ' if config_arg else ''}-y",
    ]
    return lines

"""The node updater: takes one allocated node to "services started" through its command runner —
wait until it answers, sync file_mounts (and the cluster token), run initialization and setup
commands (skipped when their inputs' hash is what the node recorded), then the start commands.

Deciding (the plan, the steps, whether setup can be skipped) is pure; `NodeUpdater` acts, logs
every step's output to `<log_dir>/<instance id>.log` and to `logging`, and retries a failed
install a bounded number of times before reporting INSTALL_FAILED with the command and its output.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from autoscaler.config import ClusterConfig
from providers.base import CommandRunner, Instance, ProviderError

log = logging.getLogger("autoscaler.launcher.updater")

# On the node, relative to its working directory (the login directory over SSH, the slot
# directory for a local node): per node even when local nodes share one home.
STATE_DIR = ".rayctl"
SETUP_HASH_PATH = f"{STATE_DIR}/setup-hash"
TOKEN_PATH = f"{STATE_DIR}/token"
OUTPUT_TAIL_LINES = 20
DEFAULT_READY_TIMEOUT_S = 300.0
DEFAULT_COMMAND_TIMEOUT_S = 3600.0  # a setup `pip install` of a large wheel can take minutes


class UpdateStatus(enum.StrEnum):
    """How an update ended: services started, or the install failed (the lifecycle records
    these as RAYLET_INSTALLING -> RAYLET_RUNNING or RAYLET_INSTALL_FAILED)."""

    RUNNING = "RUNNING"
    INSTALL_FAILED = "INSTALL_FAILED"


class Stage(enum.StrEnum):
    WAIT = "wait"
    FILE_MOUNTS = "file_mounts"
    INITIALIZATION = "initialization"
    SETUP = "setup"
    START = "start"


@dataclass(frozen=True, slots=True)
class UpdatePlan:
    """Everything the updater will do on one node, resolved from the cluster config."""

    instance_id: str
    node_type: str
    is_head: bool
    file_mounts: tuple[tuple[str, str], ...]  # (remote path, local path), config order
    initialization_commands: tuple[str, ...]
    setup_commands: tuple[str, ...]
    start_commands: tuple[str, ...]
    head_address: str = ""
    token_file: str = ""  # local path of the cluster token, copied to TOKEN_PATH on the node
    resources: tuple[tuple[str, float], ...] = ()  # the type's resources: RAYCTL_NODE_RESOURCES
    node_ip: str = ""  # RAYCTL_NODE_IP_ADDRESS; "" leaves `rayctl start` on 127.0.0.1
    # a worker's end without its head (runtime/raylet/head_loss.py): RAYCTL_HEAD_LOST_TIMEOUT_S
    # and RAYCTL_END_MACHINE_COMMAND, which `rayctl start` reads; 0 / "" leave its defaults
    head_lost_timeout_s: float = 0.0
    end_machine_command: str = ""


@dataclass(frozen=True, slots=True)
class Step:
    stage: Stage
    command: str


@dataclass(frozen=True, slots=True)
class UpdateResult:
    instance_id: str
    status: UpdateStatus
    attempts: int
    setup_skipped: bool = False
    stage: Stage | None = None  # where it failed
    failed_command: str = ""
    exit_code: int | None = None
    output_tail: tuple[str, ...] = ()  # the failing command's last OUTPUT_TAIL_LINES lines
    message: str = ""
    log_path: str = ""

    @property
    def ok(self) -> bool:
        return self.status is UpdateStatus.RUNNING


# --- decisions (pure) ------------------------------------------------------------------------


def plan_update(
    config: ClusterConfig,
    instance_id: str,
    node_type: str,
    *,
    is_head: bool,
    head_address: str = "",
    token_file: str = "",
    node_ip: str = "",
) -> UpdatePlan:
    """The plan for one node: Ray's merge of head / worker / per-type command lists.
    `node_ip` is what `node_ip_address` says for the instance."""
    return UpdatePlan(
        instance_id=instance_id,
        node_type=node_type,
        is_head=is_head,
        file_mounts=tuple(config.file_mounts.items()),
        initialization_commands=tuple(config.initialization_commands_for(node_type)),
        setup_commands=tuple(config.setup_commands_for(node_type, head=is_head)),
        start_commands=tuple(config.start_commands_for(head=is_head)),
        head_address=head_address,
        token_file=token_file,
        node_ip=node_ip,
    )


def node_ip_address(runner: CommandRunner, instance: Instance) -> str:
    """The address a node's services bind to and advertise, so other nodes reach its GCS,
    raylet, workers and objects: the instance's internal IP. "" (so `rayctl start` keeps
    127.0.0.1) when the runner runs the node's commands on this machine (a local slot, a
    simulated instance), where the instance's address is not one of this machine's."""
    return "" if runner.on_this_machine else instance.internal_ip


def setup_steps(plan: UpdatePlan) -> list[Step]:
    return [Step(Stage.INITIALIZATION, c) for c in plan.initialization_commands] + [
        Step(Stage.SETUP, c) for c in plan.setup_commands
    ]


def start_steps(plan: UpdatePlan) -> list[Step]:
    return [Step(Stage.START, c) for c in plan.start_commands]


def setup_hash(plan: UpdatePlan, mount_digests: Mapping[str, str]) -> str:
    """What setup depends on: its commands and the content of every file mount. Start
    commands and the token are left out: changing them must not reinstall."""
    material = {
        "node_type": plan.node_type,
        "initialization_commands": plan.initialization_commands,
        "setup_commands": plan.setup_commands,
        "file_mounts": sorted(mount_digests.items()),
    }
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def should_run_setup(stored_hash: str, current_hash: str, *, force: bool = False) -> bool:
    return force or stored_hash.strip() != current_hash


def node_env(plan: UpdatePlan, remote_token_file: str) -> dict[str, str]:
    """The environment every command gets (DESIGN.md section 6). The token is a path."""
    env = {"RAYCTL_NODE_TYPE": plan.node_type, "RAYCTL_INSTANCE_ID": plan.instance_id}
    if plan.head_address:
        env["RAYCTL_HEAD_ADDRESS"] = plan.head_address
    if plan.node_ip:  # `rayctl start --node-ip-address` defaults to it
        env["RAYCTL_NODE_IP_ADDRESS"] = plan.node_ip
    if remote_token_file:
        env["RAYCTL_TOKEN_FILE"] = remote_token_file
    if plan.head_lost_timeout_s:
        env["RAYCTL_HEAD_LOST_TIMEOUT_S"] = f"{plan.head_lost_timeout_s:g}"
    if plan.end_machine_command:
        env["RAYCTL_END_MACHINE_COMMAND"] = plan.end_machine_command
    if plan.resources:  # the raylet offers exactly its type's shape (Ray: RAY_OVERRIDE_RESOURCES)
        env["RAYCTL_NODE_RESOURCES"] = json.dumps(dict(plan.resources))
    return env


def tail_lines(output: str, count: int = OUTPUT_TAIL_LINES) -> tuple[str, ...]:
    return tuple(output.splitlines()[-count:])


# --- local file contents (for the hash) -------------------------------------------------------


def mount_digests(file_mounts: Sequence[tuple[str, str]]) -> dict[str, str]:
    """remote path -> sha256 of the local file or directory tree (names, modes, contents).
    A missing local path digests as "missing"; syncing it reports the error."""
    return {remote: _digest(Path(local).expanduser()) for remote, local in file_mounts}


def _digest(path: Path) -> str:
    if not path.exists():
        return "missing"
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(f"{file.relative_to(path) if file != path else ''}:".encode())
        digest.update(f"{os.stat(file).st_mode & 0o777}:".encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


# --- acting -------------------------------------------------------------------------------------


class _StepFailed(Exception):
    def __init__(self, stage: Stage, command: str, exit_code: int | None, output: str) -> None:
        super().__init__(f"{stage.value} failed: {command}")
        self.stage, self.command, self.exit_code, self.output = stage, command, exit_code, output


class NodeUpdater:
    """Runs a plan on one node. `restart=False` leaves start commands out (`up --no-restart`);
    `force_setup` runs setup even when the node's hash matches."""

    def __init__(
        self,
        runner: CommandRunner,
        plan: UpdatePlan,
        *,
        log_dir: Path,
        ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S,
        command_timeout_s: float | None = DEFAULT_COMMAND_TIMEOUT_S,
        setup_retries: int = 2,
        retry_delay_s: float = 5.0,
        restart: bool = True,
        force_setup: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.runner, self.plan = runner, plan
        self.log_path = Path(log_dir) / f"{plan.instance_id}.log"
        self.ready_timeout_s, self.command_timeout_s = ready_timeout_s, command_timeout_s
        self.setup_retries, self.retry_delay_s = max(setup_retries, 0), retry_delay_s
        self.restart, self.force_setup, self._sleep = restart, force_setup, sleep
        self._out: IO[str] | None = None

    def update(self) -> UpdateResult:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as out:
            self._out = out
            try:
                self._note(f"update of {self.plan.instance_id} ({self.plan.node_type})")
                try:
                    self.runner.wait_ready(self.ready_timeout_s)
                except ProviderError as exc:
                    return self._failed(_StepFailed(Stage.WAIT, "", None, str(exc)), 1)
                return self._attempts()
            finally:
                self._out = None

    def _attempts(self) -> UpdateResult:
        total = self.setup_retries + 1
        for attempt in range(1, total + 1):
            try:
                skipped = self._install()
            except _StepFailed as failure:
                self._note(f"attempt {attempt}/{total} failed at {failure.stage.value}")
                if attempt == total:
                    return self._failed(failure, attempt)
                self._sleep(self.retry_delay_s)
                continue
            self._note("node is up")
            log.info("node %s updated", self.plan.instance_id,
                     extra={"instance_id": self.plan.instance_id, "setup_skipped": skipped})
            return UpdateResult(self.plan.instance_id, UpdateStatus.RUNNING, attempt,
                                setup_skipped=skipped, log_path=str(self.log_path))
        raise AssertionError("unreachable: the last attempt returns")

    def _install(self) -> bool:
        """One pass; returns whether setup was skipped. Raises _StepFailed."""
        digests = mount_digests(self.plan.file_mounts)
        self._sync_mounts()
        env = node_env(self.plan, self._ship_token())
        current = setup_hash(self.plan, digests)
        stored = self._run(Stage.SETUP, f"cat {SETUP_HASH_PATH} 2>/dev/null || true", env).output
        run_setup = should_run_setup(stored, current, force=self.force_setup)
        if run_setup:
            for step in setup_steps(self.plan):
                self._check(step, self._run(step.stage, step.command, env))
            self._run(Stage.SETUP, f"mkdir -p {STATE_DIR} && printf %s {current} > "
                                   f"{SETUP_HASH_PATH}", env)
        else:
            self._note("setup skipped: commands and file mounts unchanged since the last setup")
        if self.restart:
            for step in start_steps(self.plan):
                self._check(step, self._run(step.stage, step.command, env))
        return not run_setup

    def _sync_mounts(self) -> None:
        for remote, local in self.plan.file_mounts:
            self._note(f"[file_mounts] {local} -> {remote}")
            try:
                self.runner.put_file(local, remote)
            except (ProviderError, OSError) as exc:
                raise _StepFailed(Stage.FILE_MOUNTS, f"copy {local} -> {remote}", None,
                                  str(exc)) from exc

    def _ship_token(self) -> str:
        """Copy the token file to the node (never its value on a command line); its path."""
        if not self.plan.token_file:
            return ""
        try:
            self.runner.put_file(self.plan.token_file, TOKEN_PATH)
        except (ProviderError, OSError) as exc:
            raise _StepFailed(Stage.FILE_MOUNTS, f"copy token -> {TOKEN_PATH}", None,
                              str(exc)) from exc
        where = self._run(Stage.FILE_MOUNTS, f"chmod 600 {TOKEN_PATH} && pwd", {})
        self._check(Step(Stage.FILE_MOUNTS, f"chmod 600 {TOKEN_PATH}"), where)
        lines = where.output.strip().splitlines()
        # absolute when the node told us its working directory; else relative to it (where
        # every command runs)
        return f"{lines[-1]}/{TOKEN_PATH}" if lines else TOKEN_PATH

    def _run(self, stage: Stage, command: str, env: Mapping[str, str]) -> _Ran:
        self._note(f"[{stage.value}] $ {command}")
        try:
            result = self.runner.run(command, env=env, timeout_s=self.command_timeout_s)
        except ProviderError as exc:
            raise _StepFailed(stage, command, None, str(exc)) from exc
        if result.output:
            self._write(result.output if result.output.endswith("\n") else result.output + "\n")
        if result.exit_code != 0:
            self._note(f"[{stage.value}] exit code {result.exit_code}")
        return _Ran(result.exit_code, result.output)

    def _check(self, step: Step, ran: _Ran) -> None:
        if ran.exit_code != 0:
            raise _StepFailed(step.stage, step.command, ran.exit_code, ran.output)

    def _failed(self, failure: _StepFailed, attempts: int) -> UpdateResult:
        where = f"`{failure.command}`" if failure.command else failure.stage.value
        code = f" (exit code {failure.exit_code})" if failure.exit_code is not None else ""
        message = f"{failure.stage.value} failed on {self.plan.instance_id}: {where}{code}"
        if failure.stage is Stage.WAIT:
            message = f"node {self.plan.instance_id} never answered: {failure.output}"
        self._note(message)
        log.error("%s after %d attempt(s); log: %s", message, attempts, self.log_path,
                  extra={"instance_id": self.plan.instance_id, "stage": failure.stage.value})
        return UpdateResult(
            self.plan.instance_id, UpdateStatus.INSTALL_FAILED, attempts,
            stage=failure.stage, failed_command=failure.command, exit_code=failure.exit_code,
            output_tail=tail_lines(failure.output), message=message, log_path=str(self.log_path),
        )

    def _note(self, text: str) -> None:
        self._write(f"==> {text}\n")
        log.info("%s: %s", self.plan.instance_id, text,
                 extra={"instance_id": self.plan.instance_id})

    def _write(self, text: str) -> None:
        if self._out is not None:
            self._out.write(text)
            self._out.flush()


@dataclass(frozen=True, slots=True)
class _Ran:
    exit_code: int
    output: str


"""`LocalCommandRunner`: runs a local slot's commands with `bash -c` in the slot directory, each
in its own session, and records every process group it starts so terminate can stop it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import psutil

from providers.base import CommandResult, InstanceNotFound
from providers.local.state import ProcessRecord

TIMEOUT_EXIT_CODE = 124  # what coreutils' `timeout` returns, so scripts read it the same way


def is_background(command: str) -> bool:
    """`cmd &` (but not `a && b`) asks for a background process."""
    text = command.rstrip()
    return text.endswith("&") and not text.endswith("&&")


class LocalCommandRunner:
    """Commands for one slot. The node environment (RAYCTL_NODE_TYPE, RAYCTL_INSTANCE_ID,
    RAYCTL_TEMP_DIR=<slot>/tmp) is always set; RAYCTL_HEAD_ADDRESS and RAYCTL_TOKEN_FILE come
    from the caller, in `env` or `node_env`, since only the updater knows them."""

    def __init__(
        self,
        instance_id: str,
        node_type: str,
        slot_dir: Path,
        record_process: Callable[[ProcessRecord], None],
        node_env: Mapping[str, str] | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.slot_dir = slot_dir
        self._record_process = record_process
        self.node_env = {
            **(node_env or {}),
            "RAYCTL_NODE_TYPE": node_type,
            "RAYCTL_INSTANCE_ID": instance_id,
            "RAYCTL_TEMP_DIR": str(slot_dir / "tmp"),
        }
        self._background: list[subprocess.Popen[bytes]] = []

    @property
    def on_this_machine(self) -> bool:
        return True  # a slot is a directory here: this rayctl, this machine's loopback

    def environment(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **self.node_env, **(env or {})}

    def run(
        self,
        command: str,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> CommandResult:
        """Run to completion (or start in the background when the command ends with `&`)."""
        self._require_slot()
        if is_background(command):
            pid = self.start_background(command.rstrip()[:-1], env=env)
            return CommandResult(0, f"started in the background (pid {pid})\n")
        # Output goes to a file, not a pipe: a daemon the command leaves behind keeps the pipe
        # open and would make us wait for it to exit.
        with tempfile.TemporaryFile() as output:
            proc = self._spawn(command, env, stdout=output)
            try:
                exit_code = proc.wait(timeout=timeout_s)
                note = ""
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                exit_code = proc.wait()
                exit_code, note = TIMEOUT_EXIT_CODE, f"\n[timed out after {timeout_s} s]\n"
            output.seek(0)
            text = output.read().decode(errors="replace")
        return CommandResult(exit_code, text + note)

    def start_background(self, command: str, *, env: Mapping[str, str] | None = None) -> int:
        """Start a long-running command, output to `<slot>/logs/`; returns its pid (= pgid)."""
        self._require_slot()
        logs = self.slot_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"background-{time.time_ns()}.log"
        with open(log_path, "ab") as log_file:
            proc = self._spawn(command, env, stdout=log_file)
        self._background.append(proc)  # kept so the child is reaped when it exits
        return proc.pid

    def put_file(self, local_path: str, remote_path: str) -> None:
        """Copy locally. A relative remote path is under the slot directory (where commands
        run); `~` is this user's home, as in a command; an absolute path is used as is."""
        self._require_slot()
        target = Path(remote_path).expanduser()
        if not target.is_absolute():
            target = self.slot_dir / target
        target.parent.mkdir(parents=True, exist_ok=True)
        source = Path(local_path).expanduser()
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)

    def wait_ready(self, timeout_s: float) -> None:
        self._require_slot()

    def _spawn(
        self, command: str, env: Mapping[str, str] | None, *, stdout: IO[bytes]
    ) -> subprocess.Popen[bytes]:
        (self.slot_dir / "tmp").mkdir(parents=True, exist_ok=True)
        not_before = time.time() - 2.0
        proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=self.slot_dir,
            env=self.environment(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: terminate stops it as a unit
        )
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            # Cannot happen for an unreaped child, but a lower bound on its start is all
            # group_members needs to find what it left behind.
            create_time = not_before
        try:
            self._record_process(ProcessRecord(proc.pid, create_time, command))
        except BaseException:
            _kill_group(proc.pid)  # the slot is being terminated: nothing may outlive it
            proc.wait()
            raise
        return proc

    def _require_slot(self) -> None:
        if not self.slot_dir.is_dir():
            raise InstanceNotFound(
                f"local slot {self.instance_id} has no directory {self.slot_dir}; "
                "it was terminated (list instances to see the live ones)"
            )


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

"""A node whose head is gone for good: once the GCS has been unreachable for the raylet's
`--gcs-lost-timeout-s` the raylet stops its workers and servers (runtime/raylet/main.py), then
runs `--end-machine-command`, what ends this machine (power off, delete the VM, `rayctl stop`).

Without a command (plain `rayctl start`) the raylet only stops itself, as before. The command
runs detached in its own session: `rayctl stop` signals this raylet, and a power-off must not
wait for it."""

from __future__ import annotations

import logging
import os
import subprocess

log = logging.getLogger("rayctl.raylet")


def end_machine(command: str, log_dir: str) -> int:
    """Start `command` through the shell, detached, its output in `<log_dir>/end-machine.log`;
    returns its pid. Called once the node's processes have stopped."""
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, "end-machine.log"), "ab") as out:
        proc = subprocess.Popen(
            command,
            shell=True,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    log.error("head lost: ending this machine with `%s` (pid %d)", command, proc.pid)
    return proc.pid

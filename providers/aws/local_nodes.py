"""TEST-ONLY seam (`provider.command_runner: local`): EC2 instances simulated as directories on this
machine, because moto's instances never boot. Each instance's commands run locally in
`<local_runner_dir>/<instance id>/`, and terminating the instance stops every process it ran.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import structlog

from providers.base import CommandRunner, Instance
from providers.local.processes import stop_processes
from providers.local.runner import LocalCommandRunner
from providers.local.state import ProcessRecord

PROCESS_LOG = "processes.jsonl"  # one ProcessRecord per line, appended by the runner
STOP_GRACE_S = 3.0

log = structlog.get_logger("providers.aws.local_nodes")


class LocalNodes:
    """One directory per simulated instance under `root`; a real VM's disk, in miniature."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()

    def slot_dir(self, instance_id: str) -> Path:
        return self.root / instance_id

    def runner(self, instance: Instance) -> CommandRunner:
        """The instance "boots" on first use: its directory is created then."""
        slot = self.slot_dir(instance.id)
        slot.mkdir(parents=True, exist_ok=True)
        log = slot / PROCESS_LOG

        def record(process: ProcessRecord) -> None:
            with open(log, "a") as out:
                out.write(json.dumps([process.pgid, process.create_time, process.command]) + "\n")

        return LocalCommandRunner(instance.id, instance.node_type, slot, record)

    def stop(self, instance_ids: Iterable[str]) -> None:
        """What a VM's end does to its processes. Unknown ids (never run here) are no-ops."""
        slots = [self.slot_dir(i) for i in instance_ids if self.slot_dir(i).is_dir()]
        if not slots:
            return
        records = [r for slot in slots for r in _records(slot / PROCESS_LOG)]
        left = stop_processes(records, slots, STOP_GRACE_S)
        if left:  # the instance is gone in EC2 all the same: report, do not fail terminate
            log.warning("aws.local_nodes.survivors", pids=left)
        for slot in slots:
            _free_shared_memory(slot)


def _free_shared_memory(slot: Path) -> None:
    """A VM's /dev/shm ends with it. The runtime lists each session's shm dirs in
    `<session>/shm_dirs` (runtime/session.py; providers do not import runtime)."""
    for listing in slot.glob("tmp/session_*/shm_dirs"):
        for line in listing.read_text().splitlines():
            path = Path(line.strip())
            if path.name.startswith("rayctl-"):  # never anything the runtime did not create
                shutil.rmtree(path, ignore_errors=True)


def _records(path: Path) -> list[ProcessRecord]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            pgid, create_time, command = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash: that process was recorded by its pid file
        records.append(ProcessRecord(int(pgid), float(create_time), str(command)))
    return records

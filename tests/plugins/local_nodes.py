"""Simulated instances: each one a directory on this machine whose commands run as local
processes (moto's and the fake Compute API's instances never boot), and whose end (terminate,
or the cloud no longer running it: a preemption) stops every process it started, as a VM's end
would. Used by the plug-ins in local_clouds.py, built on the shipped cloud providers.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import structlog

from providers.base import Instance, ProviderState
from providers.local.processes import stop_processes
from providers.local.runner import LocalCommandRunner
from providers.local.state import ProcessRecord

PROCESS_LOG = "processes.jsonl"  # one ProcessRecord per line, appended by the runner
IDENTITY = "instance.json"  # {"cluster": ..., "node_type": ...}: whose instance this is
ENDED = "ended"  # present once the instance's processes were stopped
STOP_GRACE_S = 3.0
RUNNING_STATES = (ProviderState.PENDING, ProviderState.RUNNING)

log = structlog.get_logger("tests.plugins.local_nodes")


class LocalNodes:
    """One directory per instance of `cluster_name` under `root`: a VM's disk, in miniature."""

    def __init__(self, root: str | Path, cluster_name: str) -> None:
        self.root = Path(root).expanduser().absolute()
        self.cluster_name = cluster_name

    def slot_dir(self, instance_id: str) -> Path:
        return self.root / instance_id

    def runner(self, instance: Instance) -> LocalCommandRunner:
        """The instance "boots" on first use: its directory is created then (a restarted
        stopped instance boots again)."""
        slot = self.slot_dir(instance.id)
        (slot / "tmp").mkdir(parents=True, exist_ok=True)
        identity = {"cluster": self.cluster_name, "node_type": instance.node_type}
        (slot / IDENTITY).write_text(json.dumps(identity))
        (slot / ENDED).unlink(missing_ok=True)
        process_log = slot / PROCESS_LOG

        def record(process: ProcessRecord) -> None:
            with open(process_log, "a") as out:
                out.write(json.dumps([process.pgid, process.create_time, process.command]) + "\n")

        return LocalCommandRunner(instance.id, instance.node_type, slot, record)

    def stop(self, instance_ids: Iterable[str]) -> None:
        """What a VM's end does to its processes. Unknown ids (never run here) are no-ops."""
        slots = [self.slot_dir(i) for i in instance_ids if self.slot_dir(i).is_dir()]
        if not slots:
            return
        records = [r for slot in slots for r in _records(slot / PROCESS_LOG)]
        left = stop_processes(records, slots, STOP_GRACE_S)
        if left:  # the instance is gone in the cloud all the same: report, do not fail
            log.warning("local_nodes.survivors", pids=left)
        for slot in slots:
            _free_shared_memory(slot)
            (slot / ENDED).touch()

    def stop_ended(self, listed: Iterable[Instance]) -> None:
        """Stop the processes of this cluster's instances that the cloud lists as no longer
        running, or not at all (a preempted spot VM): the cloud ended them."""
        running = {i.id for i in listed if i.state in RUNNING_STATES}
        ended = [slot.name for slot in self._own_slots()
                 if slot.name not in running and not (slot / ENDED).exists()]
        if ended:
            log.info("local_nodes.ended", instances=ended)
            self.stop(ended)

    def _own_slots(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [slot for slot in self.root.iterdir()
                if _cluster_of(slot / IDENTITY) == self.cluster_name]


def _cluster_of(identity: Path) -> str | None:
    try:
        return str(json.loads(identity.read_text())["cluster"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _free_shared_memory(slot: Path) -> None:
    """A VM's /dev/shm ends with it. The runtime lists each session's shm dirs in
    `<session>/shm_dirs` (runtime/session.py)."""
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

"""Many nodes on one machine, for tests and experiments (like Ray's `cluster_utils.Cluster`): a head
plus raylets added and removed in a few hundred milliseconds, each with its own node id, ports and
shared-memory directory. Everything stops with `shutdown()` (or when this process exits)."""

from __future__ import annotations

import os
import signal
import tempfile
from typing import Any

import psutil

from runtime.auth import read_credentials, read_token_file
from runtime.node import NodeHandle, start_head, start_raylet
from runtime.session import stop_session


class Cluster:
    def __init__(self, head_node_args: dict[str, Any] | None = None, *, temp_dir: str | None = None,
                 death_timeout_s: float = 2.0) -> None:
        self._own_temp = temp_dir is None
        self.temp_dir = temp_dir or tempfile.mkdtemp(prefix="rayctl-cluster-")
        args = {"num_cpus": 1, **(head_node_args or {})}
        self.head = start_head(temp_dir=self.temp_dir, parent_pid=os.getpid(), death_timeout_s=death_timeout_s,
                               **args)
        self.nodes: list[NodeHandle] = [self.head]

    @property
    def address(self) -> str:
        return self.head.gcs_address

    @property
    def token(self) -> str:
        return read_token_file(self.head.token_file)

    def add_node(self, *, num_cpus: float = 1, num_gpus: float | None = None,
                 resources: dict[str, float] | None = None, object_store_memory: int | None = None,
                 spill_capacity_bytes: int | None = None, env: dict[str, str] | None = None,
                 gcs_lost_timeout_s: float | None = None, end_machine_command: str = "") -> NodeHandle:
        """Start another raylet joining the head; returns once it is registered."""
        node = start_raylet(gcs_address=self.address, token_file=self.head.token_file,
                            session_dir=self.head.session_dir, num_cpus=num_cpus, num_gpus=num_gpus,
                            resources=resources, object_store_memory=object_store_memory,
                            spill_capacity_bytes=spill_capacity_bytes, parent_pid=os.getpid(),
                            env=None if env is None else {**os.environ, **env},
                            gcs_lost_timeout_s=gcs_lost_timeout_s,
                            end_machine_command=end_machine_command)
        self.nodes.append(node)
        return node

    def remove_node(self, node: NodeHandle, allow_graceful: bool = True) -> None:
        """Stop a node: SIGTERM (graceful: it unregisters) or SIGKILL (the GCS notices a dead node)."""
        proc = node.procs[-1]
        try:
            proc.send_signal(signal.SIGTERM if allow_graceful else signal.SIGKILL)
            proc.wait(10)
        except (ProcessLookupError, psutil.Error):
            pass
        if node in self.nodes:
            self.nodes.remove(node)

    def connect(self, **init_args: Any) -> dict[str, Any]:
        import runtime

        credentials = read_credentials(self.head.token_file)  # the token, and TLS when it has it
        return runtime.init(address=self.address, _token=credentials, _temp_dir=self.temp_dir,
                            **init_args)

    def shutdown(self) -> None:
        import runtime

        if runtime.is_initialized():
            runtime.shutdown()
        stop_session(self.head.session_dir, grace_s=3)
        if self._own_temp:
            import shutil

            shutil.rmtree(self.temp_dir, ignore_errors=True)

"""The `rayctl` command line: thin typer commands, each parses, calls one function, renders.

  node.py     start, stop             this machine's node (runtime/cli_commands.py does the work)
  status.py   status                  the autoscaler's view of a cluster
  cluster.py  up, down                the cluster launcher (autoscaler/launcher/)
  remote.py   exec, attach, submit, rsync-up, rsync-down, get-head-ip, monitor
  job.py      job submit|status|logs|stop|list|delete   (the head's web service: autoscaler/web/)
  state.py    list, summary                              (the same service)
"""

from __future__ import annotations

from autoscaler.cli import cluster, dashboard, job, node, remote, state, status  # noqa: F401 - they register commands
from autoscaler.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]

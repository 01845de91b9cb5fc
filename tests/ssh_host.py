"""One SSH test host as a process, for a host with its own network stack:
`ip netns exec NS python tests/ssh_host.py ROOT --host ADDR --key KEY` runs tests/ssh_server.py's
server on ADDR until SIGTERM, writes `ROOT/ready` (its port) once it listens, and appends every
exec request to `ROOT/commands.log` (the in-process server's `commands`, readable from outside).
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

import ssh_server
from ssh_server import ssh_server as serve

READY_FILE = "ready"
COMMANDS_FILE = "commands.log"


class CommandLog(list[str]):
    """`SSHServer.commands` that also writes each command to a file, one per line."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def append(self, command: str) -> None:
        super().append(command)
        with open(self.path, "a") as out:
            out.write(command.replace("\n", " ") + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path, help="the host's directory (home/, keys/ under it)")
    parser.add_argument("--host", required=True, help="address to listen on")
    parser.add_argument("--port", type=int, default=22)
    parser.add_argument("--key", type=Path, required=True, help="client private key to authorize")
    args = parser.parse_args(argv)
    # ssh_server listens on its module's HOST; this process is that module's only user.
    ssh_server.HOST = args.host
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serve(args.root, args.port, key=args.key) as server:
        server.commands = CommandLog(args.root / COMMANDS_FILE)
        ready = args.root / READY_FILE
        ready.with_suffix(".tmp").write_text(str(server.port))
        ready.with_suffix(".tmp").replace(ready)  # whoever waits never reads half a file
        stop.wait()


if __name__ == "__main__":
    main()

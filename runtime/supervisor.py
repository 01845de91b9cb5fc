"""The head's supervisor (`python -m runtime.supervisor SPEC.json`): runs the GCS and any extra
head services it is given (the autoscaler monitor), restarts one that crashes (with backoff, a
bounded number of times a minute), records every pid for `rayctl stop`, and stops them all on
SIGTERM. It knows nothing about what it runs: the spec lists names and command lines."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from runtime.log_rotation import rotate_own_output
from runtime.session import record_pid

log = logging.getLogger("rayctl.supervisor")
MAX_RESTARTS_PER_MINUTE = 10


@dataclass
class Service:
    name: str
    argv: list[str]
    log_path: str
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self, session_dir: str) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        record_pid(session_dir, self.name, self.proc.pid)

    def may_restart(self, now: float) -> bool:
        self.restarts = [t for t in self.restarts if now - t < 60]
        return len(self.restarts) < MAX_RESTARTS_PER_MINUTE


def run(spec: dict) -> None:  # type: ignore[type-arg]
    session_dir = spec["session_dir"]
    services = [Service(s["name"], s["argv"], s["log"]) for s in spec["services"]]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for service in services:
        service.start(session_dir)
    while not stopping:
        time.sleep(0.2)
        for service in services:
            assert service.proc is not None
            code = service.proc.poll()
            if code is None or stopping:
                continue
            now = time.time()
            if not service.may_restart(now):
                log.error("%s keeps crashing (%d restarts in a minute); giving up on it",
                          service.name, MAX_RESTARTS_PER_MINUTE)
                continue
            log.warning("%s exited with code %s; restarting it", service.name, code)
            service.restarts.append(now)
            time.sleep(min(0.1 * 2 ** len(service.restarts), 5))
            if not stopping:
                service.start(session_dir)
    for service in services:
        if service.proc is not None and service.proc.poll() is None:
            service.proc.terminate()
    deadline = time.monotonic() + 5
    for service in services:
        if service.proc is None:
            continue
        try:
            service.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            service.proc.kill()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rotate_own_output()
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    run(spec)


if __name__ == "__main__":
    main()

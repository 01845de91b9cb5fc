"""The head of a job's process group (run by path with `python -I -S`, so it costs a bare
interpreter, not an import of rayctl): runs the entrypoint in a shell inside its own group and,
when the supervisor that started it dies (a killed actor, a lost node's worker), takes the whole
group down with it, so no grandchild of a job outlives the job.

  python -I -S group_leader.py ENTRYPOINT     (started by the supervisor with a new session)

A stop is SIGTERM to the group: the entrypoint gets it directly and this process waits for it.
Exits with the entrypoint's code (128 + N when signal N ended it, as shells report)."""

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def main() -> int:
    parent = os.getppid()
    try:  # SIGTERM to us the moment the supervisor's process dies
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass

    def on_term(signum: int, frame: object) -> None:
        if os.getppid() != parent:  # orphaned: the supervisor died; end the job's whole group
            os.killpg(0, signal.SIGKILL)
        # else a stop: the whole group got SIGTERM too; wait for the entrypoint to end

    signal.signal(signal.SIGTERM, on_term)
    if os.getppid() != parent:
        return 1
    child = subprocess.Popen(["/bin/sh", "-c", sys.argv[1]])
    code = child.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())

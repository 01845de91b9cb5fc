"""Killing the GCS of a test cluster with SIGKILL and starting it again as its supervisor would
(same command line, same Redis), for tests of what a GCS restart keeps."""

from __future__ import annotations

import os
import signal
import subprocess

import psutil


def gcs_process(temp_dir: str) -> psutil.Process:
    from runtime.session import all_sessions, session_processes

    procs = [p for s in all_sessions(temp_dir) for p in session_processes(s)]
    return next(p for p in procs if "runtime.gcs.server" in " ".join(p.cmdline()))


def kill_gcs(temp_dir: str) -> tuple[list[str], str]:
    """SIGKILL the GCS; returns what `start_gcs_again` needs."""
    gcs = gcs_process(temp_dir)
    cmdline, cwd = gcs.cmdline(), gcs.cwd()
    gcs.send_signal(signal.SIGKILL)
    gcs.wait(10)
    return cmdline, cwd


def start_gcs_again(temp_dir: str, cmdline: list[str], cwd: str) -> None:
    """Start the GCS again; recorded in the session so that its teardown stops it too."""
    from runtime.session import all_sessions, record_pid

    with open(os.path.join(temp_dir, "gcs-restarted.log"), "ab") as log:
        restarted = subprocess.Popen(cmdline, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
    record_pid(all_sessions(temp_dir)[0], "gcs", restarted.pid)

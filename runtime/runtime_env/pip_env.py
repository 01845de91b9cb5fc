"""Build one pip virtualenv for a runtime_env requirement set: `venv --system-site-packages`,
the raylet interpreter's site-packages appended (so rayctl and its deps stay importable),
then `pip install`, bounded by a timeout; a failure carries pip's own output."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import time

from runtime.runtime_env.spec import RuntimeEnvError

READY_FILE = ".rayctl_ready"
PIP_OUTPUT_TAIL_CHARS = 4000


def env_digest(requirements: tuple[str, ...]) -> str:
    """The venv's name: the sorted requirements and the interpreter version it is built for."""
    blob = json.dumps([f"{sys.version_info[0]}.{sys.version_info[1]}", sorted(requirements)])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def python_of(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def is_ready(venv: str) -> bool:
    return os.path.exists(os.path.join(venv, READY_FILE))


def build(
    venv: str, requirements: tuple[str, ...], extra_pip_args: tuple[str, ...], *, timeout_s: float
) -> None:
    """Create `venv` and install `requirements` into it; the caller holds the lock for `venv`.
    Built in place (a venv cannot be moved), so a half-built one is wiped first."""
    shutil.rmtree(venv, ignore_errors=True)
    deadline = time.monotonic() + timeout_s
    try:
        # --without-pip: ensurepip costs seconds; pip is importable from the parent site-packages
        _run(
            [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv],
            "create the virtualenv",
            deadline,
            timeout_s,
        )
        _link_parent_site_packages(venv)
        cmd = [
            python_of(venv),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            *extra_pip_args,
            *requirements,
        ]
        _run(cmd, f"pip install {' '.join(requirements)}", deadline, timeout_s)
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    with open(os.path.join(venv, READY_FILE), "w") as f:
        json.dump({"requirements": list(requirements), "built_at": time.time()}, f)


def _link_parent_site_packages(venv: str) -> None:
    """`--system-site-packages` exposes only the base interpreter's packages; when this process
    runs in a virtualenv (rayctl installed there), add its site dirs too, after the venv's own
    so that the requirement set's versions win. addsitedir also runs their .pth files
    (editable installs)."""
    purelib = sysconfig.get_path("purelib", vars={"base": venv, "platbase": venv})
    os.makedirs(purelib, exist_ok=True)
    parents = [p for p in site.getsitepackages() if os.path.isdir(p)]
    lines = [f"import site; site.addsitedir({p!r})" for p in parents]
    with open(os.path.join(purelib, "_rayctl_parent_site.pth"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _run(cmd: list[str], what: str, deadline: float, timeout_s: float) -> None:
    env = dict(os.environ, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)  # the driver's PYTHONPATH must not leak into the built env
    # own session: on timeout we kill pip and every build subprocess it started
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
        raise RuntimeEnvError(
            f"runtime_env pip: could not {what} within {timeout_s:g} s (pip timeout); raise the "
            f"timeout or check that the package index is reachable. pip said:\n{_tail(out)}"
        ) from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeEnvError(
            f"runtime_env pip: could not {what} (exit code {proc.returncode}); fix the requirement "
            f"in runtime_env['pip']. pip said:\n{_tail(out)}"
        )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(out: bytes | None) -> str:
    text = (out or b"").decode(errors="replace").strip()
    return text if len(text) <= PIP_OUTPUT_TAIL_CHARS else "..." + text[-PIP_OUTPUT_TAIL_CHARS:]

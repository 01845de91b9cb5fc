"""Node side of runtime_env: materialize an env once per node (`NodeEnvCache`: unpacked
packages and pip virtualenvs, shared under a file lock) and say how to start its workers
(`WorkerSetup`)."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from runtime.runtime_env import pip_env
from runtime.runtime_env.spec import URI_RE, RuntimeEnv, RuntimeEnvError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """How to start a worker for one env."""

    python: str  # the interpreter: sys.executable, or the pip env's python
    env: Mapping[str, str]  # env_vars plus PYTHONPATH entries for working_dir and py_modules
    cwd: str | None  # working_dir unpacked (the worker runs there, as in Ray)

    def apply(self, base: Mapping[str, str]) -> dict[str, str]:
        """The worker's full environment: `base` plus ours, ${VAR} expanded against `base`, our
        PYTHONPATH entries in front of the base's."""
        out = dict(base)
        for name, value in self.env.items():
            out[name] = _ENV_REF.sub(lambda m: base.get(m.group(1), ""), value)
        if "PYTHONPATH" in self.env and base.get("PYTHONPATH"):
            out["PYTHONPATH"] = f"{out['PYTHONPATH']}{os.pathsep}{base['PYTHONPATH']}"
        return out


class NodeEnvCache:
    """Materializes envs under `cache_dir` once per node: `pkgs/<hash>/` unpacked zips,
    `pip/<hash>/` virtualenvs. Concurrent preparers (threads or processes) serialize on a file
    lock per item; a finished item is marked by an atomic rename or a `.ready` file."""

    def __init__(
        self,
        cache_dir: str,
        download: Callable[[str], bytes],
        *,
        extra_pip_args: tuple[str, ...] = (),
        pip_timeout_s: float = 600.0,
    ) -> None:
        self.cache_dir = os.path.abspath(cache_dir)
        self.download = download
        self.extra_pip_args = tuple(extra_pip_args)
        self.pip_timeout_s = pip_timeout_s
        for sub in ("pkgs", "pip", "locks"):
            os.makedirs(os.path.join(self.cache_dir, sub), exist_ok=True)

    def prepare(self, env: RuntimeEnv) -> WorkerSetup:
        """Blocking: unpack packages and build the pip env if needed. Raises RuntimeEnvError."""
        paths: list[str] = []
        cwd = None
        if env.working_dir_uri:
            cwd = self.unpack(env.working_dir_uri)
            paths.append(cwd)
        paths += [self.unpack(uri) for uri in env.py_module_uris]
        python = self.pip_env(env.pip) if env.pip else sys.executable
        extra = dict(env.env_vars)
        if paths:
            user_path = extra.get("PYTHONPATH")
            extra["PYTHONPATH"] = os.pathsep.join(paths + ([user_path] if user_path else []))
        return WorkerSetup(python=python, env=extra, cwd=cwd)

    def unpack(self, uri: str) -> str:
        """The local directory holding `uri`'s files, downloading and unpacking it the first time."""
        match = URI_RE.match(uri)
        if not match:
            raise RuntimeEnvError(f"{uri!r} is not a rayctl package URI")
        digest = match.group(1)
        target = os.path.join(self.cache_dir, "pkgs", digest)
        if os.path.isdir(target):
            return target
        with self._lock(f"pkg-{digest}"):
            if os.path.isdir(target):  # another preparer finished while we waited
                return target
            data = self.download(uri)
            if hashlib.sha256(data).hexdigest()[:16] != digest:
                raise RuntimeEnvError(f"package {uri} downloaded with the wrong content hash")
            tmp = tempfile.mkdtemp(prefix=f".{digest}-", dir=os.path.dirname(target))
            try:
                _extract(data, tmp)
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return target

    def pip_env(self, requirements: tuple[str, ...]) -> str:
        """The python of the virtualenv for this requirement set, built the first time."""
        digest = pip_env.env_digest(requirements)
        target = os.path.join(self.cache_dir, "pip", digest)
        if pip_env.is_ready(target):
            return pip_env.python_of(target)
        with self._lock(f"pip-{digest}"):
            if not pip_env.is_ready(target):
                pip_env.build(
                    target, requirements, self.extra_pip_args, timeout_s=self.pip_timeout_s
                )
        return pip_env.python_of(target)

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        # flock locks belong to the open file, so two threads of one raylet exclude each other too
        with open(os.path.join(self.cache_dir, "locks", f"{name}.lock"), "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _extract(data: bytes, dest: str) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            path = zf.extract(info, dest)  # extract() drops absolute and ".." parts
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(path, mode)

"""runtime_env (as in Ray): validate the user's dict, pack working_dir/py_modules into content-named
zips stored in the cluster KV, merge job and task envs, and materialize an env on a node
(`NodeEnvCache`: unpacked dirs + pip virtualenvs, built once per node, shared under a file lock)."""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import types
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

SUPPORTED_KEYS = ("env_vars", "working_dir", "py_modules", "pip", "excludes")
# Keys Ray knows that rayctl deliberately does not implement: say so instead of "unknown key".
UNSUPPORTED_RAY_KEYS = {
    "conda": "use 'pip' instead (rayctl builds one virtualenv per requirement set)",
    "container": "run the cluster itself in your image instead",
    "image_uri": "run the cluster itself in your image instead",
    "uv": "use 'pip' instead",
}
URI_PREFIX = "gcs://_rayctl_pkg_"
_URI_RE = re.compile(r"^gcs://_rayctl_pkg_([0-9a-f]{16})\.zip$")
MAX_PACKAGE_BYTES = 100 * 1024 * 1024
EXCLUDED_DIRS = frozenset(
    {"__pycache__", ".git", ".venv", ".hg", ".svn", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)
KV_NAMESPACE = "runtime_env"
KV_CHUNK_BYTES = 1024 * 1024  # gRPC refuses messages over 4 MiB by default
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class RuntimeEnvError(Exception):
    """A runtime_env is invalid, too big, or could not be built on a node (message says the fix)."""


@dataclass(frozen=True, slots=True)
class RuntimeEnv:
    """The validated, normalized env a task/actor runs in: packages are already uploaded URIs."""

    env_vars: Mapping[str, str] = field(default_factory=dict)
    working_dir_uri: str | None = None
    py_module_uris: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()  # sorted requirement strings

    def key(self) -> str:
        """Stable id of this environment ("" when empty): workers are pooled per key."""
        if self.is_empty():
            return ""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def is_empty(self) -> bool:
        return not (self.env_vars or self.working_dir_uri or self.py_module_uris or self.pip)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for task specs; `from_dict` inverts it, `package` accepts it as is."""
        out: dict[str, Any] = {}
        if self.env_vars:
            out["env_vars"] = dict(sorted(self.env_vars.items()))
        if self.working_dir_uri:
            out["working_dir"] = self.working_dir_uri
        if self.py_module_uris:
            out["py_modules"] = list(self.py_module_uris)
        if self.pip:
            out["pip"] = list(self.pip)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuntimeEnv:
        return cls(
            env_vars=dict(data.get("env_vars") or {}),
            working_dir_uri=data.get("working_dir"),
            py_module_uris=tuple(data.get("py_modules") or ()),
            pip=tuple(sorted(data.get("pip") or ())),
        )

    def __hash__(self) -> int:
        return hash(self.key())


# -- validation (driver side, at .options()/.remote() time) ------------------------------------


def validate(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Check a user's runtime_env and return it normalized (absolute paths, parsed pip list).

    Raises RuntimeEnvError naming the bad key or value and how to fix it."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RuntimeEnvError(
            f"runtime_env must be a dict, got {type(raw).__name__}; "
            "pass e.g. runtime_env={'env_vars': {'A': '1'}}"
        )
    out: dict[str, Any] = {}
    for key, value in raw.items():
        _check_key(key)
        if value is None:
            continue
        out[key] = _VALIDATORS[key](value)
    return out


def _check_key(key: object) -> None:
    if key in SUPPORTED_KEYS:
        return
    supported = ", ".join(SUPPORTED_KEYS)
    if key in UNSUPPORTED_RAY_KEYS:
        raise RuntimeEnvError(
            f"runtime_env key {key!r} is not supported by rayctl: {UNSUPPORTED_RAY_KEYS[str(key)]}. "
            f"Supported keys: {supported}"
        )
    near = difflib.get_close_matches(str(key), SUPPORTED_KEYS, n=1, cutoff=0.5)
    hint = f"; did you mean {near[0]!r}?" if near else "."
    raise RuntimeEnvError(f"runtime_env has unknown key {key!r}{hint} Supported keys: {supported}")


def _validate_env_vars(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise RuntimeEnvError(
            f"runtime_env['env_vars'] must be a dict of str to str, got {type(value).__name__}"
        )
    for k, v in value.items():
        if not isinstance(k, str) or not k or "=" in k:
            raise RuntimeEnvError(
                f"runtime_env['env_vars'] has a bad name {k!r}: names must be non-empty strings without '='"
            )
        if not isinstance(v, str):
            raise RuntimeEnvError(
                f"runtime_env['env_vars'][{k!r}] is {type(v).__name__} {v!r}; values must be strings "
                f"(write {{{k!r}: {str(v)!r}}})"
            )
    return dict(value)


def _validate_dir(value: Any, what: str) -> str:
    if isinstance(value, types.ModuleType):
        value = _module_dir(value, what)
    if not isinstance(value, (str, os.PathLike)):
        raise RuntimeEnvError(
            f"runtime_env[{what!r}] must be a local directory path, got {type(value).__name__}"
        )
    path = os.fspath(value)
    if path.startswith("gcs://"):
        if not _URI_RE.match(path):
            raise RuntimeEnvError(
                f"runtime_env[{what!r}] URI {path!r} was not made by rayctl; pass a local directory"
            )
        return path
    if "://" in path:
        raise RuntimeEnvError(
            f"runtime_env[{what!r}] {path!r}: remote URIs are not supported; download it and pass "
            "the local directory (rayctl uploads it to the cluster)"
        )
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(full):
        raise RuntimeEnvError(
            f"runtime_env[{what!r}] {path!r} is not an existing directory (resolved to {full!r} "
            f"from the driver's cwd {os.getcwd()!r}); pass a path to a local directory"
        )
    return full


def _module_dir(module: types.ModuleType, what: str) -> str:
    paths = list(getattr(module, "__path__", []) or [])
    if not paths:
        raise RuntimeEnvError(
            f"runtime_env[{what!r}]: module {module.__name__!r} is a single file, not a package; "
            "pass its folder or make it a package"
        )
    return str(paths[0])


def _validate_working_dir(value: Any) -> str:
    return _validate_dir(value, "working_dir")


def _validate_py_modules(value: Any) -> list[str]:
    if isinstance(value, (str, os.PathLike, types.ModuleType)) or not isinstance(
        value, (list, tuple)
    ):
        raise RuntimeEnvError(
            "runtime_env['py_modules'] must be a list of local directories (or modules), "
            f"got {type(value).__name__}; write py_modules=[...]"
        )
    return [_validate_dir(v, "py_modules") for v in value]


def _validate_excludes(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise RuntimeEnvError("runtime_env['excludes'] must be a list of glob patterns (strings)")
    return list(value)


def _validate_pip(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        extra = set(value) - {"packages"}
        if extra:
            raise RuntimeEnvError(
                f"runtime_env['pip'] has unsupported keys {sorted(extra)}; only 'packages' is supported"
            )
        value = value.get("packages")
    if isinstance(value, str):
        value = _read_requirements_file(value)
    if not isinstance(value, (list, tuple)):
        raise RuntimeEnvError(
            "runtime_env['pip'] must be a list of requirement strings, a requirements.txt path, "
            f"or {{'packages': [...]}}; got {type(value).__name__}"
        )
    return sorted({_parse_requirement(r) for r in value})


def _read_requirements_file(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise RuntimeEnvError(
            f"runtime_env['pip'] {path!r} is not a requirements file; pass a list like ['requests==2.31']"
        )
    with open(path) as f:
        lines = (line.split("#", 1)[0].strip() for line in f)
        return [line for line in lines if line]


def _parse_requirement(req: Any) -> str:
    if not isinstance(req, str):
        raise RuntimeEnvError(
            f"runtime_env['pip'] entry {req!r} must be a string like 'requests==2.31'"
        )
    try:
        return str(Requirement(req.strip()))
    except InvalidRequirement as exc:
        raise RuntimeEnvError(
            f"runtime_env['pip'] requirement {req!r} is not valid: {exc}. Use PEP 508 form, e.g. "
            "'requests>=2.31' or 'mypkg @ file:///abs/path/mypkg-1.0-py3-none-any.whl'"
        ) from exc


_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "env_vars": _validate_env_vars,
    "working_dir": _validate_working_dir,
    "py_modules": _validate_py_modules,
    "pip": _validate_pip,
    "excludes": _validate_excludes,
}


def merge(job_env: dict[str, Any] | None, task_env: dict[str, Any] | None) -> dict[str, Any]:
    """Ray's rule: each field the task/actor sets replaces the job's, except env_vars, which are
    merged name by name (the task's value wins)."""
    merged = dict(job_env or {})
    for key, value in (task_env or {}).items():
        if key == "env_vars" and isinstance(value, Mapping):
            merged["env_vars"] = {**(merged.get("env_vars") or {}), **value}
        else:
            merged[key] = value
    return merged


# -- packaging (driver side) -------------------------------------------------------------------


def package(
    raw: dict[str, Any] | None,
    upload: Callable[[str, bytes], None],
    exists: Callable[[str], bool],
    *,
    max_package_bytes: int = MAX_PACKAGE_BYTES,
) -> RuntimeEnv:
    """Validate, zip working_dir and each py_module deterministically, upload each zip once under
    its content-hash URI, and return the normalized env."""
    spec = validate(raw)
    excludes = tuple(spec.get("excludes", ()))

    def to_uri(path: str, top: str) -> str:
        if path.startswith("gcs://"):
            return path
        data = zip_directory(path, top=top, excludes=excludes, max_bytes=max_package_bytes)
        uri = f"{URI_PREFIX}{hashlib.sha256(data).hexdigest()[:16]}.zip"
        if not exists(uri):
            upload(uri, data)
        return uri

    working_dir = spec.get("working_dir")
    return RuntimeEnv(
        env_vars=spec.get("env_vars", {}),
        working_dir_uri=to_uri(working_dir, "") if working_dir else None,
        # a py_module keeps its folder name inside the zip so that `import <name>` works
        py_module_uris=tuple(
            to_uri(p, os.path.basename(p.rstrip("/"))) for p in spec.get("py_modules", ())
        ),
        pip=tuple(spec.get("pip", ())),
    )


def zip_directory(
    root: str, *, top: str = "", excludes: tuple[str, ...] = (), max_bytes: int = MAX_PACKAGE_BYTES
) -> bytes:
    """The same tree always gives the same bytes: sorted entries, fixed timestamps and modes."""
    files = list(_walk(root, excludes))
    for rel, size in files:
        if size > max_bytes:
            raise RuntimeEnvError(
                f"{os.path.join(root, rel)} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB "
                "package limit; add it to runtime_env['excludes'] and load it from shared storage"
            )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for rel, _ in files:
            src = os.path.join(root, rel)
            info = zipfile.ZipInfo(f"{top}/{rel}" if top else rel, date_time=_ZIP_EPOCH)
            mode = 0o755 if os.access(src, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(src, "rb") as f:
                zf.writestr(info, f.read())
    data = buf.getvalue()
    if len(data) > max_bytes:
        biggest = sorted(files, key=lambda f: -f[1])[:5]
        listing = ", ".join(f"{rel} ({size / 2**20:.1f} MiB)" for rel, size in biggest)
        raise RuntimeEnvError(
            f"package of {root} is {len(data) / 2**20:.1f} MiB zipped, over the {max_bytes / 2**20:.0f} MiB "
            f"limit; largest files: {listing}. Exclude data with runtime_env['excludes']"
        )
    return data


def _walk(root: str, excludes: tuple[str, ...]) -> Iterator[tuple[str, int]]:
    """(relative posix path, size) of every regular file to pack, in sorted order."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in EXCLUDED_DIRS
            # any virtualenv, whatever its name: never ship an interpreter tree
            and not os.path.exists(os.path.join(dirpath, d, "pyvenv.cfg"))
            and not _excluded(f"{rel_dir}/{d}".lstrip("/"), excludes)
        )
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}".lstrip("/")
            path = os.path.join(dirpath, name)
            if name.endswith(".pyc") or _excluded(rel, excludes) or not os.path.isfile(path):
                continue
            yield rel, os.path.getsize(path)


def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch(rel, p.strip("/")) or fnmatch(name, p) for p in patterns)


class KvPackageStore:
    """Packages in the cluster KV, split into chunks that fit a gRPC message. The manifest is
    written last, so `exists` never sees a half-uploaded package."""

    def __init__(
        self, put: Callable[[str, bytes], None], get: Callable[[str], bytes | None]
    ) -> None:
        self._put = put
        self._get = get

    @classmethod
    def over_gcs(cls, gcs_call: Callable[[str, Any], Any]) -> KvPackageStore:
        """A store over the GCS KV (namespace "runtime_env"), e.g. `over_gcs(_core().gcs_call)`.
        `gcs_call(method, request)` must be synchronous (on the raylet: run prepare in a thread
        and bridge the aio stub with run_coroutine_threadsafe)."""
        from runtime.protocol import gcs_pb2

        def put(key: str, value: bytes) -> None:
            request = gcs_pb2.KvRequest(ns=KV_NAMESPACE, key=key, value=value, overwrite=True)
            gcs_call("KvPut", request)

        def get(key: str) -> bytes | None:
            reply = gcs_call("KvGet", gcs_pb2.KvRequest(ns=KV_NAMESPACE, key=key))
            return bytes(reply.value) if reply.found else None

        return cls(put, get)

    def upload(self, uri: str, data: bytes) -> None:
        chunks = [data[i : i + KV_CHUNK_BYTES] for i in range(0, len(data), KV_CHUNK_BYTES)]
        for i, chunk in enumerate(chunks):
            self._put(f"{uri}#{i}", chunk)
        manifest = {
            "chunks": len(chunks),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        self._put(uri, json.dumps(manifest).encode())

    def exists(self, uri: str) -> bool:
        return self._get(uri) is not None

    def download(self, uri: str) -> bytes:
        raw = self._get(uri)
        if raw is None:
            raise RuntimeEnvError(
                f"package {uri} is not in the cluster KV; re-submit from the driver"
            )
        manifest = json.loads(raw)
        parts = [self._get(f"{uri}#{i}") for i in range(manifest["chunks"])]
        data = b"".join(p or b"" for p in parts)
        if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
            raise RuntimeEnvError(
                f"package {uri} is corrupt in the cluster KV; re-submit from the driver"
            )
        return data


# -- node side ---------------------------------------------------------------------------------


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
        match = _URI_RE.match(uri)
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
        from runtime import runtime_env_pip

        digest = runtime_env_pip.env_digest(requirements)
        target = os.path.join(self.cache_dir, "pip", digest)
        if runtime_env_pip.is_ready(target):
            return runtime_env_pip.python_of(target)
        with self._lock(f"pip-{digest}"):
            if not runtime_env_pip.is_ready(target):
                runtime_env_pip.build(
                    target, requirements, self.extra_pip_args, timeout_s=self.pip_timeout_s
                )
        return runtime_env_pip.python_of(target)

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

"""A runtime_env as the user writes it and as it travels (as in Ray): the keys, validation with
messages that name the fix, Ray's merge rule for job and task envs, and `RuntimeEnv`, the
normalized form whose packages are already uploaded (see packages.py)."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
# A package uploaded by rayctl (a working_dir or py_module zip), named by its content hash.
URI_PREFIX = "gcs://_rayctl_pkg_"
URI_RE = re.compile(r"^gcs://_rayctl_pkg_([0-9a-f]{16})\.zip$")


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
        if not URI_RE.match(path):
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

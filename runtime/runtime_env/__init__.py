"""runtime_env (as in Ray): the env a job, task or actor runs in. spec.py validates and merges
the user's dict, packages.py zips and uploads working_dir and py_modules (driver side), node.py
builds an env on a node with pip_env.py's virtualenvs. The names other modules use are here."""

from runtime.runtime_env.node import NodeEnvCache, WorkerSetup
from runtime.runtime_env.packages import KvPackageStore, package, zip_directory
from runtime.runtime_env.spec import RuntimeEnv, RuntimeEnvError, merge, validate

__all__ = [
    "KvPackageStore",
    "NodeEnvCache",
    "RuntimeEnv",
    "RuntimeEnvError",
    "WorkerSetup",
    "merge",
    "package",
    "validate",
    "zip_directory",
]

"""A driver's runtime_env: the job's (from `init(runtime_env=...)`) merged with a task's or an
actor's own, packaged once per distinct env (working_dir / py_modules zipped into the GCS KV)."""

from __future__ import annotations

import json
import threading
from typing import Any

from runtime.runtime_env import KvPackageStore, merge, package, validate


class JobEnv:
    def __init__(self, gcs_call: Any, job_env: dict[str, Any] | None) -> None:
        self._gcs_call = gcs_call
        self.job = validate(job_env) if job_env else {}
        self._packaged: dict[str, dict[str, Any] | None] = {}
        self._lock = threading.Lock()

    def for_options(self, task_env: dict[str, Any] | None) -> dict[str, Any] | None:
        """The packaged env a task or actor with `runtime_env=task_env` runs in (None: default)."""
        merged = merge(self.job, task_env)
        if not merged:
            return None
        key = json.dumps(merged, sort_keys=True, default=str)
        with self._lock:
            if key not in self._packaged:
                store = KvPackageStore.over_gcs(self._gcs_call)
                env = package(merged, store.upload, store.exists)
                self._packaged[key] = None if env.is_empty() else env.to_dict()
            return self._packaged[key]

"""Worker-pool keys and set-up for runtime_envs on one raylet: an env is materialized once per
node (runtime/runtime_env/ NodeEnvCache: packages fetched from the GCS KV, a venv per
requirement set); the default env needs no set-up."""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Callable, Coroutine
from typing import Any

GcsCall = Callable[[str, Any], Coroutine[Any, Any, Any]]  # (method name, request) -> reply


class EnvSetup:
    def __init__(self, session_dir: str, gcs_call: GcsCall) -> None:
        self.cache_dir = os.path.join(session_dir, "runtime_env")
        self._gcs_call = gcs_call
        self._cache: Any = None

    def setup(self, env: dict[str, Any] | None) -> tuple[str, Any]:
        """(pool key, async setup) for a runtime_env: the default pool needs no setup."""
        if not env:
            return "", None
        from runtime.runtime_env import RuntimeEnv

        parsed = RuntimeEnv.from_dict(env)
        if parsed.is_empty():
            return "", None

        async def setup() -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, self._node_cache().prepare, parsed)

        return parsed.key(), setup

    def _node_cache(self) -> Any:
        """Materializes runtime_envs on this node; made on first use, in the event loop."""
        if self._cache is None:
            from runtime.runtime_env import KvPackageStore, NodeEnvCache

            loop = asyncio.get_running_loop()

            def gcs_call(method: str, request: Any) -> Any:  # from the executor thread
                return asyncio.run_coroutine_threadsafe(self._gcs_call(method, request), loop).result(70)

            store = KvPackageStore.over_gcs(gcs_call)
            # e.g. "--no-index --find-links DIR" for clusters without access to an index
            extra = tuple(shlex.split(os.environ.get("RAYCTL_PIP_EXTRA_ARGS", "")))
            self._cache = NodeEnvCache(self.cache_dir, store.download, extra_pip_args=extra)
        return self._cache

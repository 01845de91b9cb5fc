"""rayctl's runtime: a Ray-style distributed runtime. `import runtime as rt` and use it as `ray`."""

from runtime import exceptions
from runtime.api import (
    RuntimeContext,
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_actor,
    get_gpu_ids,
    get_runtime_context,
    init,
    is_initialized,
    kill,
    method,
    nodes,
    put,
    remote,
    shutdown,
    wait,
)
from runtime.constants import RAYCTL_VERSION as __version__
from runtime.object_ref import ObjectRef

__all__ = [
    "ObjectRef",
    "RuntimeContext",
    "__version__",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "wait",
]

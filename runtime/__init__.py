"""rayctl's runtime: a Ray-style distributed runtime. `import runtime as rt` and use it as `ray`."""

import os

# gRPC's core logs at INFO by default, and servers here close idle connections (runtime/
# listener_caps.py): without this a driver idle for 10 s printed "Got goaway ... connection idle"
# on its stderr. A GRPC_VERBOSITY the user set is kept; so is grpc's own if it was imported first.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

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
from runtime.streaming import ObjectRefGenerator

__all__ = [
    "ObjectRef",
    "ObjectRefGenerator",
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

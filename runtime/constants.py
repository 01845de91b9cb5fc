"""Tunables and version identity of the runtime, read once from the environment."""

from __future__ import annotations

import os
import sys

RAYCTL_VERSION = "0.1.0"
PROTOCOL_VERSION = 3  # 2: states and kinds as proto enums; the drain protocol; 3: node sync streams
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"

# Values up to this size travel inline with task replies; larger ones go to the node's store.
INLINE_OBJECT_MAX_BYTES = int(os.environ.get("RAYCTL_INLINE_OBJECT_MAX_BYTES", 100 * 1024))
# A raylet reports to the GCS when its resources, load, idle time or drain change: a load change
# at once (after a 10 ms batch), the others at the next check, this often (Ray: 100 ms); a node
# with nothing to report pings after a silence the GCS sets at registration: its death timeout
# / PINGS_PER_DEATH_TIMEOUT, at most NODE_PING_S (2 s for the default 5 s timeout).
NODE_REPORT_CHECK_S = 0.1
NODE_PING_S = 2.0
PINGS_PER_DEATH_TIMEOUT = 2.5
# A node silent for this long is declared dead by the GCS.
NODE_DEATH_TIMEOUT_S = float(os.environ.get("RAYCTL_NODE_DEATH_TIMEOUT_S", 5.0))
# How long a driver or worker keeps retrying a GCS that does not answer (it is being restarted
# by the head's supervisor, ~1 s) before the call fails (Ray waits 60 s).
GCS_RECONNECT_TIMEOUT_S = float(os.environ.get("RAYCTL_GCS_RECONNECT_TIMEOUT_S", 30.0))
# Default object store size when init()/start gives none: 30% of memory, capped at 2 GiB.
DEFAULT_OBJECT_STORE_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_RETRIES = 3
# Where sessions keep logs, pid files and sockets (a local provider slot overrides it).
TEMP_DIR = os.environ.get("RAYCTL_TEMP_DIR", f"/tmp/rayctl-{os.getuid()}")  # per user, 0700
TOKEN_ENV = "RAYCTL_TOKEN"
TOKEN_FILE_ENV = "RAYCTL_TOKEN_FILE"
ADDRESS_ENV = "RAYCTL_ADDRESS"  # init() with no address joins this cluster
# A submitted job's packaged runtime_env, set by its supervisor: init() in the job's entrypoint
# makes it the job's env, so the job's tasks and actors run in it too (as in Ray).
JOB_RUNTIME_ENV_ENV = "RAYCTL_JOB_RUNTIME_ENV"
JOB_SUBMISSION_ID_ENV = "RAYCTL_JOB_SUBMISSION_ID"

# gRPC channels between our services: reconnect fast. The default first reconnect backoff is 1 s,
# and services start in parallel (a raylet may dial the GCS before it listens): that alone made
# init() take ~1.2 s instead of ~0.4 s about half the time.
GRPC_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 1000),
]

"""The public API, mirroring Ray's core: init/shutdown, remote, get/put/wait, cancel/kill,
get_actor, nodes and resources, the runtime context."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.actor import ActorClass, ActorHandle
from runtime.auth import Credentials, credentials_from_env, read_credentials
from runtime.constants import (
    ADDRESS_ENV,
    JOB_RUNTIME_ENV_ENV,
    JOB_SUBMISSION_ID_ENV,
    PROTOCOL_VERSION,
    PYTHON_VERSION,
    RAYCTL_VERSION,
)
from runtime.core_worker import CoreWorker
from runtime.object_ref import ObjectRef
from runtime.protocol import common_pb2, gcs_pb2
from runtime.protocol.states import NodeState
from runtime.remote_function import RemoteFunction

_state_lock = threading.Lock()


@dataclass
class _Session:
    cw: CoreWorker
    namespace: str
    node: Any = None  # NodeHandle of a private cluster this driver started


_session: _Session | None = None


def _core() -> CoreWorker:
    session = _session
    if session is None:
        from runtime import worker_context

        cw = worker_context.current()
        if cw is not None:
            return cw
        init()
        assert _session is not None
        return _session.cw
    return session.cw


def _namespace() -> str:
    return _session.namespace if _session is not None else ""


def is_initialized() -> bool:
    return _session is not None


def init(
    address: str | None = None,
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    spill_capacity_bytes: int | None = None,
    namespace: str | None = None,
    runtime_env: dict[str, Any] | None = None,
    ignore_reinit_error: bool = False,
    _temp_dir: str | None = None,
    _token: str | Credentials | None = None,
    **unsupported: Any,
) -> dict[str, Any]:
    """Connect this process to a cluster. No address: start a private one for this process.
    "auto": the cluster `rayctl start --head` started on this machine. "host:port": that GCS."""
    global _session
    if unsupported:
        raise TypeError(f"init() got unsupported argument(s): {', '.join(sorted(unsupported))}")
    with _state_lock:
        if _session is not None:
            if ignore_reinit_error:
                return _context_info()
            raise RuntimeError(
                "runtime.init() was already called; call shutdown() first "
                "or pass ignore_reinit_error=True"
            )
        address = address or os.environ.get(ADDRESS_ENV) or None
        if runtime_env is None and os.environ.get(JOB_RUNTIME_ENV_ENV):
            runtime_env = json.loads(os.environ[JOB_RUNTIME_ENV_ENV])
        if address is None:
            access = _start_private_cluster(
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                resources=resources,
                object_store_memory=object_store_memory,
                spill_capacity_bytes=spill_capacity_bytes,
                temp_dir=_temp_dir,
            )
        else:
            if num_cpus is not None or num_gpus is not None or resources or spill_capacity_bytes:
                raise ValueError(
                    "num_cpus/num_gpus/resources/spill_capacity_bytes describe a new cluster; they cannot be "
                    "given when connecting to an existing one (address=...)"
                )
            access = _locate(address, _temp_dir, _token)
        cw = CoreWorker(
            gcs_address=access.gcs_address,
            token=access.credentials.token,
            tls=access.credentials.tls,
            raylet_port=access.raylet_port,
            host=access.host,
            mode="driver",
            namespace=namespace or "",
        )
        _register_job(cw, namespace, runtime_env)
        _session = _Session(cw, cw.namespace, access.node)
    atexit.register(shutdown)
    return _context_info()


@dataclass(frozen=True)
class _ClusterAccess:
    """What a driver needs to join a cluster: the GCS, the token, and its machine's raylet (the
    driver binds the raylet's address)."""

    gcs_address: str
    credentials: Credentials
    host: str
    raylet_port: int
    node: Any = None  # NodeHandle of a private cluster this driver started


def _start_private_cluster(**node_options: Any) -> _ClusterAccess:
    """A cluster of this machine for this driver alone: it stops when the driver exits."""
    from runtime import node as node_mod

    node = node_mod.start_head(parent_pid=os.getpid(), **node_options)
    host = node.gcs_address.rpartition(":")[0]
    return _ClusterAccess(
        node.gcs_address, read_credentials(node.token_file), host, node.raylet_local_port, node
    )


def _locate(address: str, temp_dir: str | None, token: str | Credentials | None) -> _ClusterAccess:
    """Joining an existing cluster: its GCS address, its token, and the local raylet."""
    from runtime import node as node_mod

    # "auto", a `rayctl up` cluster's name, or an address: a cluster whose head runs here
    local = node_mod.choose_local_cluster(address, temp_dir)
    if local is not None:
        address = local.address
    # The token of a cluster on this machine goes only to that cluster's address:
    # init(address=X) for another cluster must bring X's token, never hand this one to X.
    given = Credentials(token) if isinstance(token, str) and token else token or None
    credentials = given or credentials_from_env() or (
        read_credentials(local.token_file) if local is not None else None
    )
    if not credentials:
        raise ConnectionError(
            f"no cluster token for {address}: set RAYCTL_TOKEN_FILE to the cluster's token file"
        )
    from runtime.cluster_client import local_raylet

    try:
        host, raylet_port = local_raylet(address, credentials.token, tls=credentials.tls)
    except ConnectionError as exc:
        if local is not None and _not_that_cluster(str(exc)):
            info = node_mod.read_address_file(temp_dir) or {}
            where = (f"{node_mod.address_file_path(temp_dir)} names cluster "
                     f"{info.get('cluster_id') or '?'}" if local.name == node_mod.START_CLUSTER
                     else f"cluster {local.name!r} (`rayctl up`) was")
            raise ConnectionError(
                f"{where} at {address}, but what answers there is not it ({_answer(str(exc))}): "
                "that cluster has stopped; start it again (`rayctl start --head` or `rayctl up`) "
                "or pass the address and token of the one you mean"
            ) from None
        raise
    return _ClusterAccess(address, credentials, host, raylet_port)


def _not_that_cluster(error: str) -> bool:
    return "cluster token" in error or "did not prove" in error


def _answer(error: str) -> str:
    """'it is cluster X' when the server said so, else what it said."""
    import re

    match = re.search(r"this is cluster (\w+)", error)
    return f"it is cluster {match.group(1)}" if match else "it cannot prove it holds the token"


def _register_job(cw: CoreWorker, namespace: str | None, runtime_env: dict[str, Any] | None) -> None:
    """Start this driver's job: the GCS checks our versions and names the job; the raylet then
    knows which of its workers and actors end with this driver."""
    reply = cw.gcs_call(
        "RegisterJob",
        gcs_pb2.RegisterJobRequest(
            versions=common_pb2.Versions(
                python=PYTHON_VERSION, rayctl=RAYCTL_VERSION, protocol=PROTOCOL_VERSION
            ),
            driver_address=cw.address,
            driver_pid=os.getpid(),
            namespace=namespace or "",
            submission_id=os.environ.get(JOB_SUBMISSION_ID_ENV, ""),
        ),
    )
    cw.job_id = reply.job_id
    cw.namespace = namespace or f"anonymous-{reply.job_id}"
    from runtime.job_env import JobEnv

    cw.job_env = JobEnv(cw.gcs_call, runtime_env)
    cw.request(cw.raylet, "register_driver", {"job_id": reply.job_id})


def _context_info() -> dict[str, Any]:
    assert _session is not None
    cw = _session.cw
    return {
        "address": cw.gcs_address,
        "node_id": cw.node_id,
        "job_id": cw.job_id,
        "namespace": cw.namespace,
    }


def shutdown() -> None:
    """Disconnect; a private cluster started by init() is stopped."""
    global _session
    with _state_lock:
        session, _session = _session, None
    if session is None:
        return
    cw = session.cw
    try:
        cw.gcs_call("FinishJob", gcs_pb2.JobIdRequest(job_id=cw.job_id), timeout=5, retry_s=0)
    except Exception:  # noqa: BLE001 - the cluster may already be gone
        pass
    cw.shutdown()
    if session.node is not None:
        from runtime.session import stop_session

        stop_session(session.node.session_dir)


def remote(*args: Any, **options: Any) -> Any:
    """@remote, @remote(num_cpus=..., ...) on functions and classes."""
    if len(args) == 1 and not options and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("remote() takes a function or class, or only keyword options")
    return lambda target: _make_remote(target, options)


def _make_remote(target: Any, options: dict[str, Any]) -> Any:
    if isinstance(target, type):
        return ActorClass(target, options)
    return RemoteFunction(target, options)


def method(*, num_returns: int = 1, enable_task_events: bool = True) -> Callable[[Any], Any]:
    """Decorate an actor method to declare how many values it returns, and whether its calls
    are recorded for `rayctl list tasks` (Ray's enable_task_events)."""

    from runtime.remote_function import check_num_returns

    check_num_returns(num_returns, streaming_ok=True)

    def wrap(fn: Any) -> Any:
        fn.__rayctl_num_returns__ = num_returns
        fn.__rayctl_task_events__ = bool(enable_task_events)
        return fn

    return wrap


def put(value: Any) -> ObjectRef:
    return _core().put(value)


def get(refs: Any, *, timeout: float | None = None) -> Any:
    cw = _core()
    if isinstance(refs, ObjectRef):
        return cw.get([refs], timeout)[0]
    if isinstance(refs, list | tuple):
        bad = [r for r in refs if not isinstance(r, ObjectRef)]
        if bad:
            raise TypeError(f"get() takes ObjectRefs, got {type(bad[0]).__name__}")
        return cw.get(list(refs), timeout)
    raise TypeError(f"get() takes an ObjectRef or a list of them, got {type(refs).__name__}")


async def get_async(ref: ObjectRef) -> Any:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, get, ref)


def wait(
    refs: list[ObjectRef],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Split refs into (ready, not ready) once `num_returns` are ready or `timeout` passes."""
    from runtime.streaming import ObjectRefGenerator

    if not isinstance(refs, list) or not all(isinstance(r, ObjectRef | ObjectRefGenerator)
                                             for r in refs):
        raise TypeError("wait() takes a list of ObjectRefs (or of generator tasks' "
                        "ObjectRefGenerators)")
    if len(set(refs)) != len(refs):
        raise ValueError("wait() got duplicate ObjectRefs")
    if not 0 <= num_returns <= len(refs):
        raise ValueError(f"num_returns={num_returns} must be between 0 and len(refs)={len(refs)}")
    cw = _core()
    deadline = None if timeout is None else time.monotonic() + timeout
    event = threading.Event()
    watched: set[str] = set()  # owned refs that wake us when ready (registered once each)
    while True:
        event.clear()  # before looking: a wake-up from here on is not lost
        ready = [r for r in refs if (r.has_next_ready() if isinstance(r, ObjectRefGenerator)
                                     else _is_ready(cw, r))]
        if len(ready) >= num_returns or (deadline is not None and time.monotonic() >= deadline):
            for object_id in watched:  # a loop of wait() calls must not pile them up
                cw.refs.off_ready(object_id, event.set)
            ready = ready[:num_returns] if len(ready) > num_returns else ready
            ready_set = set(ready)
            return ready, [r for r in refs if r not in ready_set]
        for r in refs:
            if (isinstance(r, ObjectRef) and r not in ready and r.id not in watched
                    and cw.refs.on_ready(r.id, event.set)):
                watched.add(r.id)
        # borrowed refs and generators cannot wake us: look again every 50 ms
        polling = any(not isinstance(r, ObjectRef) or r.id not in watched
                      for r in refs if r not in ready)
        cap = 0.05 if polling else 1.0
        remaining = cap if deadline is None else min(cap, max(0.0, deadline - time.monotonic()))
        event.wait(remaining)


def _is_ready(cw: CoreWorker, ref: ObjectRef) -> bool:
    status = cw.ready_status(ref.id)
    if status is not None:
        return status
    return cw.owner_says_ready(ref)  # borrowed: ask its owner


def cancel(ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that makes `ref`: dropped if queued, interrupted if running (killed if force)."""
    cw = _core()
    if force:
        async def is_actor_call() -> bool:
            return cw.actors.owns(ref.task_id())

        if cw.run(is_actor_call()):
            raise ValueError("force=True is not supported for actor calls (an actor keeps its "
                             "state, so its calls are never killed): cancel without force, or "
                             "kill the actor with kill()")
    cw.call_soon(cw.tasks.cancel, ref.task_id(), force)


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"kill() takes an actor handle, got {type(actor).__name__}")
    cw = _core()
    cw.gcs_call(
        "KillActor", gcs_pb2.KillActorRequest(actor_id=actor._actor_id, no_restart=no_restart)
    )
    if no_restart:
        from runtime.exceptions import ActorDiedError

        error = ActorDiedError(
            f"actor {actor._class_name}({actor._actor_id}) was killed by rt.kill()"
        )
        cw.call_soon(cw.actors.mark_dead, actor._actor_id, error)


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    cw = _core()
    ns = namespace if namespace is not None else (cw.namespace or _namespace())
    reply = cw.gcs_call("GetActor", gcs_pb2.GetActorRequest(name=name, namespace=ns))
    if not reply.found or reply.actor.state == common_pb2.ActorInfo.DEAD:
        raise ValueError(f"no live actor named {name!r} in namespace {ns!r}")
    from runtime.actor import _method_meta

    spec = pickle.loads(reply.actor.creation_spec)
    return ActorHandle(reply.actor.actor_id, reply.actor.class_name, _method_meta(spec["cls"]), 0)


def nodes() -> list[dict[str, Any]]:
    """Every node the GCS knows, in Ray's shape (NodeID, Alive, NodeManagerAddress, Resources...)."""
    out = []
    for n in _core().nodes():
        out.append(
            {
                "NodeID": n.node_id,
                "Alive": n.state != common_pb2.NodeInfo.DEAD,
                "State": NodeState.from_wire(n.state).value,
                "NodeManagerAddress": n.address,
                "NodeManagerPort": n.raylet_port,
                "Resources": dict(n.total),
                "Available": dict(n.available),
                "IsHead": n.is_head,
                "InstanceID": n.instance_id,
                "NodeType": n.node_type,
                "DeathReason": n.death_reason,
            }
        )
    return out


def cluster_resources() -> dict[str, float]:
    return _sum_resources("total")


def available_resources() -> dict[str, float]:
    return _sum_resources("available")


def _sum_resources(field: str) -> dict[str, float]:
    total: dict[str, float] = {}
    for n in _core().nodes():
        if n.state == common_pb2.NodeInfo.DEAD:
            continue
        for k, v in getattr(n, field).items():
            total[k] = total.get(k, 0.0) + v
    return total


@dataclass(frozen=True)
class RuntimeContext:
    job_id: str
    node_id: str
    worker_id: str
    task_id: str
    actor_id: str
    namespace: str
    gcs_address: str

    def get_job_id(self) -> str:
        return self.job_id

    def get_node_id(self) -> str:
        return self.node_id

    def get_task_id(self) -> str | None:
        return self.task_id or None

    def get_actor_id(self) -> str | None:
        return self.actor_id or None

    def get_worker_id(self) -> str:
        return self.worker_id

    def is_canceled(self) -> bool:
        """Whether cancel() was called on the running task (a sync actor call looks at this to
        stop early; Ray's). A RuntimeError in a driver or an async actor, as in Ray."""
        from runtime import worker_context

        worker = worker_context.current_worker()
        if worker is None or not self.task_id:
            raise RuntimeError("is_canceled() is for a running task or actor call, not a driver")
        if worker.async_loop is not None:
            raise RuntimeError("is_canceled() is not for async actors: cancel() raises "
                               "asyncio.CancelledError in the call instead")
        return self.task_id in worker.cancelled


def get_gpu_ids() -> list[Any]:
    """The GPUs the running task or actor may use (its CUDA_VISIBLE_DEVICES), as Ray's:
    ints for numbered devices; [] in a driver and in tasks that asked for none."""
    return list(_core().gpu_ids)


def get_runtime_context() -> RuntimeContext:
    cw = _core()
    return RuntimeContext(
        cw.job_id,
        cw.node_id,
        cw.worker_id,
        cw.current_task_id,
        cw.current_actor_id,
        cw.namespace,
        cw.gcs_address,
    )

"""`@remote` on a class: `.remote()` asks the GCS to create the actor; a handle's methods submit
calls straight to the actor's worker."""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

from runtime import ids
from runtime.protocol import common_pb2, gcs_pb2
from runtime.remote_function import check_options, encode_args, make_returns
from runtime.resources import task_shape
from runtime.serialization import dumps_function, serialize
from runtime.task_submitter import TaskState
from runtime.util.scheduling_strategies import SPREAD

ACTOR_OPTIONS = {
    "num_cpus",
    "num_gpus",
    "memory",
    "resources",
    "max_restarts",
    "max_task_retries",
    "max_concurrency",
    "name",
    "namespace",
    "lifetime",
    "scheduling_strategy",
    "runtime_env",
    "enable_task_events",
    "get_if_exists",
    "accelerator_type",
}


class ActorClass:
    def __init__(self, cls: type, options: dict[str, Any]) -> None:
        check_options(options, ACTOR_OPTIONS, f"actor class {cls.__name__}")
        self._cls = cls
        self._options = options
        self.__name__ = cls.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"actor class {self.__name__} cannot be instantiated directly; use "
            f"{self.__name__}.remote()"
        )

    def options(self, **options: Any) -> ActorClass:
        check_options(options, ACTOR_OPTIONS, f"actor class {self.__name__}")
        return ActorClass(self._cls, {**self._options, **options})

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        """Ask the GCS to create the actor (it picks a node and runs the constructor there)."""
        from runtime.api import _core, _namespace, get_actor

        cw = _core()
        opts = self._options
        if opts.get("lifetime") not in (None, "detached"):
            raise ValueError(f"lifetime must be None or 'detached', got {opts['lifetime']!r}")
        namespace = opts.get("namespace") or _namespace()
        if opts.get("get_if_exists") and opts.get("name"):
            try:
                return get_actor(opts["name"], namespace)
            except ValueError:
                pass
        info = self._actor_info(cw, namespace, self._creation_spec(cw, args, kwargs))
        reply = cw.gcs_call("CreateActor", gcs_pb2.CreateActorRequest(actor=info))
        if reply.error:
            raise ValueError(reply.error)
        return ActorHandle(
            info.actor_id, self.__name__,
            _method_meta(self._cls, opts.get("enable_task_events", True) is not False),
            int(opts.get("max_task_retries", 0))
        )

    def _creation_spec(self, cw: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """What the actor's worker runs to construct it; the GCS keeps it for restarts."""
        init = vars(self._cls).get("__init__") or next(
            (vars(base)["__init__"] for base in self._cls.__mro__ if "__init__" in vars(base)), None
        )
        sig = inspect.signature(init) if init is not None and init is not object.__init__ else None
        bound_sig = sig.replace(parameters=list(sig.parameters.values())[1:]) if sig else None
        enc_args, enc_kwargs, _, nested = encode_args(
            cw, f"{self.__name__}.__init__", bound_sig, args, kwargs
        )
        # the creation spec (kept by the GCS for restarts) holds them for good
        cw.refs.add_submitted([object_id for object_id, _ in nested])
        is_async = any(  # (an async generator method makes an async actor too, as in Ray)
            inspect.iscoroutinefunction(m) or inspect.isasyncgenfunction(m)
            for _, m in inspect.getmembers(self._cls, inspect.isfunction)
        )
        return {
            "cls": self._cls,
            # resolved here: the GCS does not wait on the arguments' owners
            "args": [_resolved(cw, a) for a in enc_args],
            "kwargs": {k: _resolved(cw, v) for k, v in enc_kwargs.items()},
            "class_name": self.__name__,
            "is_async": is_async,
            "max_concurrency": int(self._options.get("max_concurrency", 1000 if is_async else 1)),
        }

    def _actor_info(self, cw: Any, namespace: str, spec: dict[str, Any]) -> common_pb2.ActorInfo:
        """The actor as the GCS records it: its options, resources and placement."""
        from runtime.remote_function import place

        opts = self._options
        shape = task_shape(
            opts.get("num_cpus"),
            opts.get("num_gpus"),
            opts.get("memory"),
            opts.get("resources"),
            default_cpus=0,
        )
        shape, wire, capture = place(cw, shape, opts.get("scheduling_strategy"))
        if capture is not None:
            spec["capture_pg"] = capture
        affinity = wire if isinstance(wire, dict) else {}
        return common_pb2.ActorInfo(
            actor_id=ids.random_id(8),
            name=opts.get("name") or "",
            namespace=namespace,
            max_restarts=int(opts.get("max_restarts", 0)),
            detached=opts.get("lifetime") == "detached",
            creation_spec=dumps_function(spec),
            resources=shape,
            job_id=cw.job_id,
            class_name=self.__name__,
            owner_address=cw.address,
            affinity_node_id=affinity.get("node_id", ""),
            affinity_soft=bool(affinity.get("soft")),
            spread=wire == SPREAD,
            runtime_env_json=_env_json(cw, opts.get("runtime_env")),
        )


def _env_json(cw: Any, runtime_env: dict[str, Any] | None) -> str:
    import json

    env = cw.job_env.for_options(runtime_env)
    return json.dumps(env) if env else ""


def _resolved(cw: Any, encoded: Any) -> Any:
    if encoded[0] != "ref":
        return encoded
    return ("v", *serialize(cw.get([encoded[1]], None)[0]).inline())


class MethodMeta(NamedTuple):
    """What a handle knows of each method: set by @method, else the defaults."""

    num_returns: int | str = 1  # or "streaming": a generator method's calls stream its values
    task_events: bool = True  # recorded for `rayctl list tasks` (Ray's enable_task_events)


# every actor answers it once constructed (Ray's), whatever its class defines
READY_METHOD = "__ray_ready__"


def _method_meta(cls: type, task_events: bool = True) -> dict[str, MethodMeta]:
    meta = {READY_METHOD: MethodMeta(1, task_events)}
    for name, method in inspect.getmembers(cls, inspect.isfunction):
        generator = inspect.isgeneratorfunction(method) or inspect.isasyncgenfunction(method)
        meta[name] = MethodMeta(
            getattr(method, "__rayctl_num_returns__", "streaming" if generator else 1),
            getattr(method, "__rayctl_task_events__", task_events))
    return meta


class ActorMethod:
    def __init__(self, handle: ActorHandle, name: str, meta: MethodMeta) -> None:
        self._handle = handle
        self._name = name
        self._meta = meta

    def options(self, **options: Any) -> ActorMethod:
        check_options(options, {"num_returns", "name", "enable_task_events"},
                      f"actor method {self._name}")
        return ActorMethod(self._handle, self._name, MethodMeta(
            options.get("num_returns", self._meta.num_returns),
            bool(options.get("enable_task_events", self._meta.task_events))))

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._handle._call(self._name, self._meta, args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"actor method {self._name} cannot be called directly; use .{self._name}.remote()"
        )


class ActorHandle:
    def __init__(
        self, actor_id: str, class_name: str, methods: dict[str, MethodMeta], max_task_retries: int
    ) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._max_task_retries = max_task_retries

    def __getattr__(self, name: str) -> ActorMethod:
        if (name.startswith("__") and name != READY_METHOD) or name not in self._methods:
            raise AttributeError(f"actor {self._class_name} has no method {name!r}")
        return ActorMethod(self, name, self._methods[name])

    def _call(
        self, method: str, meta: MethodMeta, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        from runtime.api import _core

        cw = _core()
        name = f"{self._class_name}.{method}"
        enc_args, enc_kwargs, ref_ids, nested = encode_args(cw, name, None, args, kwargs)
        task_id = cw.task_ids.next()
        streaming = meta.num_returns == "streaming"
        num_returns = 0 if streaming else int(meta.num_returns)
        return_ids, refs = make_returns(cw, task_id, num_returns)
        spec = {
            "task_id": task_id,
            "actor_id": self._actor_id,
            "method": method,
            "name": name,
            "args": enc_args,
            "kwargs": enc_kwargs,
            "num_returns": num_returns,
            "return_ids": return_ids,
            "nested": nested,
            "owner": cw.address,
        }
        cw.refs.add_submitted(ref_ids)
        # a streaming call is not resent: a retry would yield everything again
        state = TaskState(spec, {}, return_ids, ref_ids, 0 if streaming else self._max_task_retries,
                          False, task_events=meta.task_events)
        if streaming:  # see runtime/streaming.py
            from runtime.streaming import ObjectRefGenerator, Stream

            spec["streaming"] = True
            stream = cw.tasks.streams[task_id] = Stream()
            cw.actors.submit(self._actor_id, state)
            return ObjectRefGenerator(task_id, stream)
        cw.actors.submit(self._actor_id, state)
        return refs[0] if num_returns == 1 else refs

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            ActorHandle,
            (self._actor_id, self._class_name, self._methods, self._max_task_retries),
        )

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id})"

"""`@remote` on a function: `.remote()` submits a task, `.options()` overrides its settings."""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

from runtime import ids
from runtime.constants import DEFAULT_MAX_RETRIES, INLINE_OBJECT_MAX_BYTES
from runtime.object_ref import ObjectRef
from runtime.resources import check_amount, check_resources, check_retries, task_shape
from runtime.serialization import dumps_function, serialize
from runtime.task_submitter import TaskState

TASK_OPTIONS = {
    "num_cpus",
    "num_gpus",
    "memory",
    "resources",
    "num_returns",
    "max_retries",
    "retry_exceptions",
    "scheduling_strategy",
    "name",
    "runtime_env",
    "accelerator_type",
    "enable_task_events",
}


def check_num_returns(value: Any, *, streaming_ok: bool = False) -> Any:
    """`num_returns` as an int >= 0 (or "streaming" where generators are supported), or an
    error that says what to do instead."""
    if value == "streaming" and streaming_ok:
        return value
    if value in ("dynamic", "streaming"):
        instead = ('use num_returns="streaming" (a generator task)' if streaming_ok else
                   "a generator method streams by default; declare nothing")
        raise ValueError(f"num_returns={value!r} is not supported here: {instead}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"num_returns must be an integer >= 0, got {value!r}")
    return value


def check_options(options: dict[str, Any], allowed: set[str], what: str) -> None:
    for key in ("num_cpus", "num_gpus", "memory"):
        if options.get(key) is not None:
            check_amount(f"{what}: {key}", options[key])
    if options.get("resources") is not None:
        check_resources(f"{what}: resources", options["resources"])
    for key in ("max_retries", "max_restarts", "max_task_retries"):
        if options.get(key) is not None:
            check_retries(f"{what}: {key}", options[key])
    if "num_returns" in options:
        check_num_returns(options["num_returns"],
                          streaming_ok=what.startswith(("remote function", "actor method")))
    if options.get("runtime_env"):
        from runtime.runtime_env import validate

        validate(options["runtime_env"])  # a bad runtime_env fails here, not on a node later
    unknown = set(options) - allowed
    if unknown:
        import difflib

        hints = []
        for key in sorted(unknown):
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(
            f"unknown option(s) for {what}: {', '.join(hints)}; allowed: {', '.join(sorted(allowed))}"
        )


def encode_args(
    cw: Any,
    fn_name: str,
    signature: inspect.Signature | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[list[Any], dict[str, Any], list[str], list[tuple[str, str]]]:
    """Arguments as they travel: ObjectRefs kept for resolution, everything else serialized now
    (so later mutation in the caller does not change what the task sees). Also returns the ids
    to count as submitted, and the refs nested in values as (id, owner): owned ones are counted,
    borrowed ones held by this process until the task's reply (see TaskSubmitter._finish)."""
    if signature is not None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"wrong arguments for {fn_name}(): {exc}") from None
    ref_ids: list[str] = []
    nested: list[tuple[str, str]] = []

    def one(value: Any, label: str) -> Any:
        if isinstance(value, ObjectRef):
            if cw.refs.get_entry(value.id) is not None:
                ref_ids.append(value.id)
            return ("ref", value)
        try:
            data = serialize(value)
        except Exception as exc:
            raise TypeError(
                f"could not serialize {label} of {fn_name}() ({type(value).__name__}): {exc}"
            ) from exc
        if data.size <= INLINE_OBJECT_MAX_BYTES:
            for inner in data.contained_refs:  # kept alive while the task runs; it may borrow them
                if cw.refs.get_entry(inner.id) is not None:
                    ref_ids.append(inner.id)
                else:
                    cw.refs.add_local_ref(inner)  # our hold on a borrowed ref, until the reply
                nested.append((inner.id, inner.owner_address))
        if data.size > INLINE_OBJECT_MAX_BYTES:
            ref = cw.put_serialized(cw.fresh_object_id(), data)
            ref_ids.append(ref.id)
            return ("ref", ref)
        meta, buffers = data.inline()
        return ("v", meta, buffers or ())  # (an empty list per argument is 56 B a queued task)

    enc_args = [one(a, f"argument {i} ") for i, a in enumerate(args)]
    enc_kwargs = {k: one(v, f"argument {k!r}") for k, v in kwargs.items()}
    return enc_args, enc_kwargs, ref_ids, nested


def place(cw: Any, shape: dict[str, float],
          strategy: Any) -> tuple[dict[str, float], Any, Any]:
    """A task or actor's (shape, wire strategy, captured group). Its own strategy counts; without
    one, the placement group of the task or actor submitting it when that one captures its
    children (Ray's placement_group_capture_child_tasks), else the default.
    PlacementGroupSchedulingStrategy with no group is the default, outside any group (as in Ray).
    A placement group rewrites the shape to its bundle resources; the captured group (or None) is
    the one this task's or actor's own children go to."""
    if strategy is None and cw.capture_pg is None:  # (most tasks: nothing to import or look at)
        return shape, None, None
    from runtime.util.scheduling_strategies import PlacementGroupSchedulingStrategy, to_wire

    if strategy is None:
        strategy = PlacementGroupSchedulingStrategy(cw.capture_pg, -1, True)
    if not isinstance(strategy, PlacementGroupSchedulingStrategy):
        return shape, to_wire(strategy), None
    if strategy.placement_group is None:  # Ray's way to leave the capturing parent's group
        return shape, None, None
    from runtime.util.placement_group import bundle_shape

    group = strategy.placement_group
    captured = group if strategy.placement_group_capture_child_tasks else None
    return bundle_shape(shape, group, strategy.placement_group_bundle_index), None, captured


def make_returns(cw: Any, task_id: str, num_returns: int) -> tuple[list[str], list[ObjectRef]]:
    return_ids = [ids.object_id_for(task_id, i + 1) for i in range(num_returns)]
    refs = [cw.new_owned_ref(oid) for oid in return_ids]
    return return_ids, refs


class RemoteFunction:
    def __init__(self, fn: Any, options: dict[str, Any]) -> None:
        check_options(options, TASK_OPTIONS, f"remote function {fn.__name__}")
        self._fn = fn
        self._options = options
        self._name = fn.__name__
        self._pickled: bytes | None = None
        self._fn_id = ""
        self._shape: dict[str, float] | None = None  # one for every task of these options
        try:
            self._signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            self._signature = None
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        # a generator function streams its values unless num_returns says otherwise (Ray's)
        self._default_returns: Any = "streaming" if inspect.isgeneratorfunction(fn) else 1

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"remote function {self._name} cannot be called directly; use {self._name}.remote()"
        )

    def options(self, **options: Any) -> RemoteFunction:
        check_options(options, TASK_OPTIONS, f"remote function {self._name}")
        clone = RemoteFunction.__new__(RemoteFunction)
        clone.__dict__.update(self.__dict__)
        clone._options = {**self._options, **options}
        clone._shape = None
        return clone

    def _ensure_pickled(self) -> None:
        if self._pickled is None:
            self._pickled = dumps_function(self._fn)
            self._fn_id = hashlib.sha1(self._pickled).hexdigest()[:16]

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        from runtime.api import _core

        cw = _core()
        self._ensure_pickled()
        opts = self._options
        num_returns = check_num_returns(opts.get("num_returns", self._default_returns),
                                        streaming_ok=True)
        streaming = num_returns == "streaming"
        if streaming:
            num_returns = 0
        if self._shape is None:
            self._shape = task_shape(opts.get("num_cpus"), opts.get("num_gpus"), opts.get("memory"),
                                     opts.get("resources"), default_cpus=1)
        shape = self._shape
        enc_args, enc_kwargs, ref_ids, nested = encode_args(
            cw, self._name, self._signature, args, kwargs
        )
        task_id = cw.task_ids.next()
        return_ids, refs = make_returns(cw, task_id, num_returns)
        spec = {
            "task_id": task_id,
            "fn_id": self._fn_id,
            "fn_bytes": self._pickled,
            "name": opts.get("name") or self._name,
            "args": enc_args,
            "kwargs": enc_kwargs,
            "num_returns": num_returns,
            "return_ids": return_ids,
            "nested": nested or (),
            "owner": cw.address,
        }
        cw.refs.add_submitted(ref_ids)
        max_retries = int(opts.get("max_retries", DEFAULT_MAX_RETRIES))
        if streaming:  # see runtime/streaming.py
            spec["streaming"] = True
            max_retries = 0
        shape, strategy, capture = place(cw, shape, opts.get("scheduling_strategy"))
        if capture is not None:
            spec["capture_pg"] = capture
        retry_exceptions = opts.get("retry_exceptions", False)
        state = TaskState(spec, shape, return_ids, ref_ids, max_retries, retry_exceptions, strategy)
        state.runtime_env = cw.job_env.for_options(opts.get("runtime_env"))
        state.task_events = opts.get("enable_task_events", True) is not False
        if streaming:
            from runtime.streaming import ObjectRefGenerator, Stream

            stream = cw.tasks.streams[task_id] = Stream()
            cw.tasks.submit(state)
            return ObjectRefGenerator(task_id, stream)
        cw.tasks.submit(state)
        if num_returns == 1:
            return refs[0]
        return refs

"""The errors a user of `runtime` sees, mirroring Ray's names (Ray's in brackets where ours differ):

    RuntimeBaseError [RayError]
    ├── TaskError [RayTaskError]     (at get: also an instance of the task's exception class)
    ├── WorkerCrashedError
    ├── OutOfMemoryError           (the node's memory monitor killed the task's worker)
    ├── ActorError [RayActorError]
    │   ├── ActorDiedError           (gone for good)
    │   └── ActorUnavailableError    (restarting, or its connection broke: may come back)
    ├── ObjectLostError
    │   └── OwnerDiedError
    ├── ObjectStoreFullError
    ├── GetTimeoutError              (also a TimeoutError)
    ├── TaskCancelledError
    ├── VersionMismatchError         (rayctl's: a peer runs another version)
    └── AuthenticationError          (rayctl's: a peer lacks the cluster token)
"""

from __future__ import annotations

from typing import Any


class RuntimeBaseError(Exception):
    """Base of every error raised by the runtime."""


class TaskError(RuntimeBaseError):
    """A task raised. `cause` is the original exception; `remote_traceback` its traceback text.

    At `get`, the error raised is an instance of a subclass of both TaskError and the original
    exception's class, so `except ValueError` works as it does in Ray.
    """

    def __init__(
        self, function_name: str, remote_traceback: str, cause: BaseException | None
    ) -> None:
        self.function_name = function_name
        self.remote_traceback = remote_traceback
        self.cause = cause
        super().__init__(self._message())

    def _message(self) -> str:
        return f"task {self.function_name} failed:\n{self.remote_traceback.rstrip()}"

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskError, (self.function_name, self.remote_traceback, self.cause))

    def as_instanceof_cause(self) -> BaseException:
        """An exception that is both a TaskError and an instance of the cause's class."""
        cause_cls = type(self.cause) if self.cause is not None else None
        if (
            cause_cls is None
            or issubclass(cause_cls, TaskError)
            or cause_cls.__module__ == "builtins"
            and cause_cls in (SystemExit, KeyboardInterrupt, GeneratorExit)
        ):
            return self
        try:
            cls: Any = type(f"TaskError({cause_cls.__name__})", (TaskError, cause_cls), {})
            err = cls.__new__(cls)
            err.function_name = self.function_name
            err.remote_traceback = self.remote_traceback
            err.cause = self.cause
            err.args = (self._message(),)
            return err
        except TypeError:  # classes with incompatible layouts (some C types) cannot be mixed
            return self


class WorkerCrashedError(RuntimeBaseError):
    """The worker running a task died, and the task had no retries left."""


class OutOfMemoryError(RuntimeBaseError):
    """The node's memory monitor killed the task's worker, and the task had no retries left."""


class ActorError(RuntimeBaseError):
    """A call to an actor failed because of the actor, not the method (Ray's RayActorError)."""


class ActorDiedError(ActorError):
    """The actor is dead for good: killed, its constructor failed, or it died (worker or node)
    with no restarts left."""


class ActorUnavailableError(ActorError):
    """The actor may come back, as in Ray: it is restarting (the call was not sent), or the
    connection to it broke mid-call and it was not reported dead (the call may or may not have
    run). Raised for a call with no retries left (max_task_retries, default 0); call again later."""


class ObjectLostError(RuntimeBaseError):
    """Every copy of an object is gone and it cannot be rebuilt."""


class OwnerDiedError(ObjectLostError):
    """The process that owned the object exited."""


class GetTimeoutError(RuntimeBaseError, TimeoutError):
    """`get` did not finish within its timeout."""


class TaskCancelledError(RuntimeBaseError):
    """The task was cancelled before it finished."""


class ObjectStoreFullError(RuntimeBaseError):
    """An object could not be stored on its node: shared memory is at capacity and spilling to
    disk failed, or the shared-memory filesystem itself is full. Raised by `put`, and at `get` for a
    task whose return value could not be stored. The message says how full and what to do."""


class VersionMismatchError(RuntimeBaseError):
    """A driver or node spoke another version than the cluster; the message names both."""


class AuthenticationError(RuntimeBaseError):
    """A peer did not present the cluster token."""

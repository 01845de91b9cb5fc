"""The errors a user of `runtime` sees, with Ray's names and hierarchy (`except
ray.exceptions.RayActorError` code runs unchanged); the names rayctl shipped first stay as
aliases (in brackets):

    RayError [RuntimeBaseError]
    ├── RayTaskError [TaskError]     (at get: also an instance of the task's exception class)
    ├── WorkerCrashedError
    ├── OutOfMemoryError             (the node's memory monitor killed the task's worker)
    ├── RayActorError [ActorError]
    │   ├── ActorDiedError           (gone for good)
    │   └── ActorUnavailableError    (restarting, or its connection broke: may come back)
    ├── ObjectLostError
    │   └── OwnerDiedError
    ├── ObjectStoreFullError
    ├── GetTimeoutError              (also a TimeoutError)
    ├── TaskCancelledError
    ├── VersionMismatchError         (rayctl's: a peer runs another version)
    └── AuthenticationError          (rayctl's: a peer lacks the cluster token)

A task's exception travels back inside its RayTaskError by value (cloudpickle), so a class
defined in the driver's `__main__` comes back as that very class; one that cannot be pickled at
all comes back as its type name, message and traceback text (a RayTaskError with no cause).
"""

from __future__ import annotations

from typing import Any


class RayError(Exception):
    """Base of every error raised by the runtime."""


class RayTaskError(RayError):
    """A task raised. `cause` is the original exception (None when it could not be pickled);
    `remote_traceback` its traceback text.

    At `get`, the error raised is an instance of a subclass of both RayTaskError and the original
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
        # by value: the transport's pickle would look the cause's class up by name, which fails
        # for a class defined in the driver's __main__ (the worker holds a copy cloudpickle made)
        return (_rebuild_task_error, (self.function_name, self.remote_traceback,
                                      _cause_bytes(self.cause)))

    def as_instanceof_cause(self) -> BaseException:
        """An exception that is both a RayTaskError and an instance of the cause's class."""
        cause_cls = type(self.cause) if self.cause is not None else None
        if (
            cause_cls is None
            or issubclass(cause_cls, RayTaskError)
            or cause_cls.__module__ == "builtins"
            and cause_cls in (SystemExit, KeyboardInterrupt, GeneratorExit)
        ):
            return self
        try:
            cls: Any = type(f"RayTaskError({cause_cls.__name__})", (RayTaskError, cause_cls), {})
            err = cls.__new__(cls)
            err.function_name = self.function_name
            err.remote_traceback = self.remote_traceback
            err.cause = self.cause
            err.args = (self._message(),)
            return err
        except TypeError:  # classes with incompatible layouts (some C types) cannot be mixed
            return self


def _cause_bytes(cause: BaseException | None) -> bytes | None:
    if cause is None:
        return None
    import cloudpickle

    try:
        return bytes(cloudpickle.dumps(cause))
    except Exception:  # noqa: BLE001 - it travels as the traceback text alone
        return None


def _rebuild_task_error(function_name: str, remote_traceback: str,
                        cause: bytes | None) -> RayTaskError:
    loaded: BaseException | None = None
    if cause is not None:
        import cloudpickle

        try:
            loaded = cloudpickle.loads(cause)
        except Exception:  # noqa: BLE001 - a class this process cannot import: text only
            loaded = None
    return RayTaskError(function_name, remote_traceback, loaded)


class WorkerCrashedError(RayError):
    """The worker running a task died, and the task had no retries left."""


class OutOfMemoryError(RayError):
    """The node's memory monitor killed the task's worker, and the task had no retries left."""


class RayActorError(RayError):
    """A call to an actor failed because of the actor, not the method."""


class ActorDiedError(RayActorError):
    """The actor is dead for good: killed, its constructor failed, or it died (worker or node)
    with no restarts left."""


class ActorUnavailableError(RayActorError):
    """The actor may come back, as in Ray: it is restarting (the call was not sent), or the
    connection to it broke mid-call and it was not reported dead (the call may or may not have
    run). Raised for a call with no retries left (max_task_retries, default 0); call again later."""


class ObjectLostError(RayError):
    """Every copy of an object is gone and it cannot be rebuilt."""


class OwnerDiedError(ObjectLostError):
    """The process that owned the object exited."""


class GetTimeoutError(RayError, TimeoutError):
    """`get` did not finish within its timeout."""


class TaskCancelledError(RayError):
    """The task was cancelled before it finished."""


class ObjectStoreFullError(RayError):
    """An object could not be stored on its node: shared memory is at capacity and spilling to
    disk failed, or the shared-memory filesystem itself is full. Raised by `put`, and at `get` for a
    task whose return value could not be stored. The message says how full and what to do."""


class VersionMismatchError(RayError):
    """A driver or node spoke another version than the cluster; the message names both."""


class AuthenticationError(RayError):
    """A peer did not present the cluster token."""


# the names rayctl shipped first
RuntimeBaseError = RayError
TaskError = RayTaskError
ActorError = RayActorError

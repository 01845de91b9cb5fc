"""A worker process (`python -m runtime.worker`), started by its raylet. The I/O thread receives
pushed tasks and actor calls; the main thread runs them (an actor with max_concurrency > 1 uses a
thread pool, an async actor its own event loop). Output goes to the worker's log files and,
line by line, to the driver that submitted the task."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import queue
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runtime import shm
from runtime.actor import READY_METHOD
from runtime.auth import credentials_from_env
from runtime.constants import INLINE_OBJECT_MAX_BYTES
from runtime.core_worker import CoreWorker
from runtime.exceptions import TaskCancelledError
from runtime.log_rotation import rotate_own_output
from runtime.serialization import deserialize, serialize
from runtime.task_submitter import format_remote_error
from runtime.transport import Connection


class StreamToOwner(io.TextIOBase):
    """sys.stdout/stderr replacement: the log file, plus the owner's terminal with a prefix."""

    def __init__(self, worker: Worker, raw: Any) -> None:
        self.worker = worker
        self.raw = raw

    def write(self, text: str) -> int:
        self.raw.write(text)
        local = self.worker.local
        conn: Connection | None = getattr(local, "conn", None)
        if conn is not None and text:
            pending = getattr(local, "partial", "") + text
            complete, sep, local.partial = pending.rpartition("\n")
            if sep:
                self._send(conn, complete)
        return len(text)

    def _send(self, conn: Connection, text: str) -> None:
        prefix = getattr(self.worker.local, "prefix", "")
        try:
            self.worker.cw.call_soon(_send_quietly, conn, "log", (prefix, text))
        except RuntimeError:
            pass

    def end_task(self) -> None:
        """Send what is left of an unfinished line when a task ends."""
        local = self.worker.local
        conn = getattr(local, "conn", None)
        partial = getattr(local, "partial", "")
        local.partial = ""
        if conn is not None and partial:
            self._send(conn, partial)
        self.raw.flush()

    def flush(self) -> None:
        self.raw.flush()


def _send_quietly(conn: Connection, method: str, payload: Any) -> None:
    if conn.is_open:
        conn.send(method, payload)


# what cancel() sends the worker's main thread, where normal tasks run (Ray: KeyboardInterrupt)
CANCEL_SIGNAL = signal.SIGINT


class Worker:
    def __init__(self) -> None:
        credentials = credentials_from_env()
        assert credentials, "a worker needs RAYCTL_TOKEN_FILE"
        self.cw = CoreWorker(
            gcs_address=os.environ["RAYCTL_GCS_ADDRESS"],
            token=credentials.token,
            tls=credentials.tls,
            host=os.environ["RAYCTL_NODE_HOST"],
            raylet_port=int(os.environ["RAYCTL_RAYLET_LOCAL_PORT"]),
            mode="worker",
            worker_id=os.environ["RAYCTL_WORKER_ID"],
        )
        self.functions: dict[str, Any] = {}
        self.actor: Any = None
        self.actor_id = ""
        self.actor_name = ""
        self.async_loop: asyncio.AbstractEventLoop | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.semaphore: asyncio.Semaphore | None = None
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.local = threading.local()
        self.running: dict[str, int] = {}  # task_id -> thread id
        self.cancel_target = ""  # the running task cancel() interrupts (see _interrupt)
        self.interruptible = False  # True only while user code runs on the main thread
        signal.signal(CANCEL_SIGNAL, self._interrupt)
        # tasks and actor calls received and not answered yet; those of them cancelled (a task
        # not started yet then never starts; a sync actor call sees is_canceled()); the running
        # calls of an async actor (cancel() cancels their asyncio task)
        self.received: set[str] = set()
        self.cancelled: set[str] = set()
        self.async_tasks: dict[str, asyncio.Task[Any]] = {}
        from runtime import worker_context

        worker_context.set_current(self.cw, self)
        self.cw.handlers.update(
            {
                "push": self._on_push,
                "create_actor": self._on_create_actor,
                "cancel": self._on_cancel,
            }
        )
        self.pid = os.getpid()
        sys.stdout = StreamToOwner(self, sys.stdout)  # type: ignore[assignment]
        sys.stderr = StreamToOwner(self, sys.stderr)  # type: ignore[assignment]
        # a worker does not outlive its raylet (a killed node takes its workers with it)
        self.cw.raylet.on_close.append(lambda _c: os._exit(1))
        self.cw.request(
            self.cw.raylet,
            "register_worker",
            {"worker_id": self.cw.worker_id, "address": self.cw.address, "pid": self.pid},
        )

    # -- I/O thread side --------------------------------------------------------------------------
    def _on_push(self, conn: Connection, spec: dict[str, Any]) -> asyncio.Future[Any]:
        fut = self.cw.loop.create_future()
        self.received.add(spec["task_id"])
        fut.add_done_callback(functools.partial(self._call_done, spec["task_id"]))
        if self.async_loop is not None and spec.get("actor_id"):
            self._run_async_method(conn, spec, fut)
        elif self.pool is not None and spec.get("actor_id"):
            self.pool.submit(self._execute, conn, spec, fut)
        else:
            self.jobs.put((self._execute, conn, spec, fut))
        return fut

    def _on_create_actor(self, conn: Connection, payload: dict[str, Any]) -> asyncio.Future[Any]:
        fut = self.cw.loop.create_future()
        self.jobs.put((self._create_actor, conn, payload, fut))
        return fut

    def _call_done(self, task_id: str, _answered: Any = None) -> None:
        self.received.discard(task_id)
        self.cancelled.discard(task_id)

    def _interrupt(self, signum: int, frame: Any) -> None:
        """(The main thread, on CANCEL_SIGNAL.) Raise in the running task if it is the one
        cancelled; a late signal, after that task ended, does nothing."""
        target = self.cancel_target
        if self.interruptible and target and target == self.cw.current_task_id:
            self.cancel_target = ""
            self.interruptible = False
            raise TaskCancelledError(f"task {target} was cancelled")

    def _on_cancel(self, conn: Connection, task_id: str) -> None:
        if task_id not in self.received:
            return  # answered already
        self.cancelled.add(task_id)  # (a task still queued here never starts)
        if self.actor_id:
            # Ray's semantics: an actor keeps its state, so a running sync call is never
            # interrupted (it may look at is_canceled()); an async one gets CancelledError
            task = self.async_tasks.get(task_id)
            if task is not None and self.async_loop is not None:
                self.async_loop.call_soon_threadsafe(task.cancel)
            return
        thread_id = self.running.get(task_id)
        if thread_id is not None:
            # a signal interrupts the main thread's blocking calls too (sleep, a lock, a read)
            self.cancel_target = task_id
            signal.pthread_kill(thread_id, CANCEL_SIGNAL)

    # -- main thread ---------------------------------------------------------------------------------
    def run_forever(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            fn, *args = job
            fn(*args)

    def _resolve(self, arg: tuple[Any, ...]) -> Any:
        kind = arg[0]
        if kind == "v":
            return deserialize(arg[1], arg[2])
        if kind == "e":
            raise arg[1]
        return self.cw._materialize(arg[1], None, arg[2], None)

    def _use_gpus(self, devices: Any) -> None:
        """The devices this task (or this actor, for its life) may use, in CUDA_VISIBLE_DEVICES
        as Ray sets it: empty for one that asked for none, so it cannot take a device that
        another task holds."""
        self.cw.gpu_ids = [int(d) if str(d).isdigit() else d for d in devices or ()]
        visible = ",".join(str(d) for d in devices or ())
        if os.environ.get("CUDA_VISIBLE_DEVICES") != visible:  # (every task passes here)
            os.environ["CUDA_VISIBLE_DEVICES"] = visible

    def _execute(self, conn: Connection, spec: dict[str, Any], fut: asyncio.Future[Any]) -> None:
        task_id = spec["task_id"]
        if not spec.get("actor_id"):  # an actor keeps the devices it was created with
            self._use_gpus(spec.get("gpu_ids"))
        self.local.conn = conn
        self.local.prefix = f"({spec['name']} pid={self.pid}, node={self.cw.node_id[:8]})"
        self.cw.current_task_id = task_id
        if not spec.get("actor_id"):  # an actor captures for its whole life (its creation)
            self.cw.capture_pg = spec.get("capture_pg")
        self.running[task_id] = threading.get_ident()
        try:
            # interruptible first, then the look: a cancel that lands between the two is seen
            # by one of them (_on_cancel marks the task before it signals)
            self.interruptible = not spec.get("actor_id")  # (a signal raises only in user code)
            if task_id in self.cancelled:  # cancelled before it started: never run
                raise TaskCancelledError
            result = self._run_user_code(spec)
            self.interruptible = False
            reply = self._borrowed_after(spec, result)
            if spec.get("actor_id") and task_id in self.cancelled:  # a sync call, is_canceled()
                raise TaskCancelledError
        except TaskCancelledError:
            self.interruptible = False
            reply = _cancelled_reply(spec)
        finally:
            self.running.pop(task_id, None)
            for stream in (sys.stdout, sys.stderr):
                if isinstance(stream, StreamToOwner):
                    stream.end_task()
            self.local.conn = None
            self.cw.current_task_id = ""
            self.cancel_target = ""
        self.cw.call_soon(_resolve_future, fut, reply)

    def _run_user_code(self, spec: dict[str, Any]) -> dict[str, Any]:
        upstream = _upstream_error(spec)
        if upstream is not None:  # a dependency failed: this task fails with that error, unrun
            return {"error": upstream}
        try:
            fn = self._function(spec)
            args = [self._resolve(a) for a in spec["args"]]
            kwargs = {k: self._resolve(v) for k, v in spec["kwargs"].items()}
            result = fn(*args, **kwargs)
            if spec.get("streaming"):
                return self._stream_out(spec, result)
            return self._package_returns(spec, result)
        except TaskCancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any user error goes back to the caller
            return {"error": format_remote_error(spec["name"], exc)}

    def _function(self, spec: dict[str, Any]) -> Any:
        if spec.get("actor_id"):
            return self._actor_method(spec["method"])
        fn = self.functions.get(spec["fn_id"])
        if fn is None:
            fn = self.functions[spec["fn_id"]] = deserialize(spec["fn"], [])
        return fn

    def _actor_method(self, name: str) -> Any:
        if name == READY_METHOD and not hasattr(self.actor, READY_METHOD):
            return _ready
        return getattr(self.actor, name)

    def _package_returns(self, spec: dict[str, Any], result: Any) -> dict[str, Any]:
        n = spec["num_returns"]
        values = [result] if n == 1 else list(result) if n > 1 else []
        if n > 1 and len(values) != n:
            raise ValueError(
                f"{spec['name']} declared num_returns={n} but returned {len(values)} values"
            )
        returns = [self._package(spec, object_id, value)
                   for object_id, value in zip(spec["return_ids"], values, strict=True)]
        return {"returns": returns, "error": None}

    def _stream_out(self, spec: dict[str, Any], result: Any) -> dict[str, Any]:
        """A generator task: each yielded value goes to the owner at once, on the connection
        the reply takes after them (runtime/streaming.py)."""
        if not hasattr(result, "__iter__"):
            raise TypeError(f"{spec['name']} has num_returns=\"streaming\" but returned "
                            f"{type(result).__name__}, not a generator")
        conn = self.local.conn
        for value in result:
            self._send_item(conn, spec, value)
        return {"returns": [], "error": None}

    async def _stream_out_async(self, spec: dict[str, Any], result: Any) -> dict[str, Any]:
        """An async actor's generator method (async or not): as _stream_out, each value sent
        before the next is asked for."""
        if not hasattr(result, "__aiter__"):
            return self._stream_out(spec, result)
        conn = self.local.conn
        async for value in result:
            self._send_item(conn, spec, value)
        return {"returns": [], "error": None}

    def _send_item(self, conn: Connection, spec: dict[str, Any], value: Any) -> None:
        """One yielded value, to the owner, handed to the socket before the generator goes on:
        a value yielded just before the process dies still reaches the owner."""
        item = self._package(spec, self.cw.fresh_object_id(), value)

        async def send() -> None:
            conn.send("stream_item", (spec["task_id"], item))

        self.cw.run(send())

    def _package(self, spec: dict[str, Any], object_id: str, value: Any) -> tuple[Any, ...]:
        """One value as it travels: inline, or written to this node's shm (its location)."""
        data = serialize(value)
        contains = [(r.id, r.owner_address) for r in data.contained_refs]
        for r in data.contained_refs:
            if r.owner_address == self.cw.address:  # ours: the caller borrows it now
                self.cw.refs.add_borrower(r.id, spec["owner"])
            elif r.owner_address != spec["owner"]:  # a third party's: the caller borrows it
                self._register_borrower(r.id, r.owner_address, spec["owner"])
        if data.size <= INLINE_OBJECT_MAX_BYTES:
            return (object_id, data.inline(), None, data.size, contains)
        size = shm.write_object(self.cw.shm_dir, object_id, data.meta, data.buffers)
        # the caller owns it: a drain of this node waits for it only while the caller lives
        self.cw.request(self.cw.raylet, "seal", {"object_id": object_id, "size": size,
                                                 "owner": spec["owner"]})
        return (object_id, None, (self.cw.node_id, self.cw.shm_dir), size, contains)

    def _register_borrower(self, object_id: str, owner: str, borrower: str) -> None:
        """Before our reply carries a ref owned by a third process, make its owner count the
        caller as a borrower (we still hold the ref, so it cannot be freed meanwhile)."""
        try:
            self.cw.run(self.cw.ask(owner, "add_borrower", (object_id, borrower)), timeout=30)
        except Exception:  # noqa: BLE001 - the owner is gone: the object is lost anyway
            pass

    def _borrowed_after(self, spec: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        """Tell the caller which refs, passed nested in the arguments, we still hold."""
        nested = spec.get("nested")
        if nested:
            held = set(self.cw.refs.still_borrowed([object_id for object_id, _ in nested]))
            reply["borrowed"] = [(object_id, owner) for object_id, owner in nested if object_id in held]
            reply["borrower"] = self.cw.address
        return reply

    # -- actors ----------------------------------------------------------------------------------------
    def _create_actor(
        self, conn: Connection, payload: dict[str, Any], fut: asyncio.Future[Any]
    ) -> None:
        try:
            spec = deserialize(payload["spec"], [])
            cls = spec["cls"]
            args = [self._resolve(a) for a in spec["args"]]
            kwargs = {k: self._resolve(v) for k, v in spec["kwargs"].items()}
            self.actor_id = payload["actor_id"]
            self.cw.current_actor_id = self.actor_id
            self._use_gpus(payload.get("gpu_ids"))
            self.actor_name = spec["class_name"]
            self.cw.capture_pg = spec.get("capture_pg")
            self.local.prefix = f"({self.actor_name} pid={self.pid}, node={self.cw.node_id[:8]})"
            self.actor = cls(*args, **kwargs)
            if spec["is_async"]:
                self._start_async_loop(spec["max_concurrency"])
            elif spec["max_concurrency"] > 1:
                self.pool = ThreadPoolExecutor(spec["max_concurrency"], thread_name_prefix="actor")
            self.cw.call_soon(_resolve_future, fut, None)
        except Exception as exc:  # noqa: BLE001
            err = format_remote_error(f"{payload.get('actor_id')}.__init__", exc)
            self.cw.call_soon(_fail_future, fut, RuntimeError(str(err)))

    def _start_async_loop(self, max_concurrency: int) -> None:
        loop = asyncio.new_event_loop()
        self.async_loop = loop
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self.semaphore = asyncio.Semaphore(max_concurrency)
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, name="actor-async", daemon=True).start()
        ready.wait()

    def _run_async_method(
        self, conn: Connection, spec: dict[str, Any], fut: asyncio.Future[Any]
    ) -> None:
        async def call() -> None:
            assert self.semaphore is not None
            task_id = spec["task_id"]
            task = asyncio.current_task()
            assert task is not None
            self.async_tasks[task_id] = task
            try:
                if task_id in self.cancelled:  # cancelled before it started
                    raise asyncio.CancelledError
                async with self.semaphore:
                    self.local.conn = conn
                    self.local.prefix = (
                        f"({self.actor_name} pid={self.pid}, node={self.cw.node_id[:8]})"
                    )
                    reply = await self._invoke_async(spec)
            except asyncio.CancelledError:
                reply = _cancelled_reply(spec)
            finally:
                self.async_tasks.pop(task_id, None)
            self.cw.call_soon(_resolve_future, fut, self._borrowed_after(spec, reply))

        assert self.async_loop is not None
        asyncio.run_coroutine_threadsafe(call(), self.async_loop)

    async def _invoke_async(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Run one call of an async actor (its arguments die with this frame, before borrows
        are counted)."""
        try:
            method = self._actor_method(spec["method"])
            args = [self._resolve(a) for a in spec["args"]]
            kwargs = {k: self._resolve(v) for k, v in spec["kwargs"].items()}
            result = method(*args, **kwargs)
            if spec.get("streaming"):
                return await self._stream_out_async(spec, result)
            if asyncio.iscoroutine(result):
                result = await result
            return self._package_returns(spec, result)
        except asyncio.CancelledError:  # cancel(): the method let it through
            return _cancelled_reply(spec)
        except Exception as exc:  # noqa: BLE001
            return {"error": format_remote_error(spec["name"], exc)}


def _cancelled_reply(spec: dict[str, Any]) -> dict[str, Any]:
    return {"error": format_remote_error(
        spec["name"], TaskCancelledError(f"task {spec['name']} was cancelled"))}


def _ready() -> bool:
    """actor.__ray_ready__(): the actor is constructed and answers."""
    return True


def _upstream_error(spec: dict[str, Any]) -> BaseException | None:
    for arg in [*spec["args"], *spec["kwargs"].values()]:
        if arg[0] == "e":
            return arg[1]  # type: ignore[no-any-return]
    return None


def _resolve_future(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _fail_future(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def main() -> None:
    rotate_own_output()
    worker = Worker()
    try:
        worker.run_forever()
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()

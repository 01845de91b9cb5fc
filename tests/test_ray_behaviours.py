"""Ray Core behaviours Ray users' code relies on (issue 22), each as Ray 2.60 behaves: cancelling
actor calls (an async method gets CancelledError, a sync one sees is_canceled()), exceptions
defined in the driver's __main__ coming back as themselves (and retried by retry_exceptions), an
exception that cannot be pickled coming back as its text, and Ray's exception names."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from runtime import exceptions as rx


def test_cancelling_a_running_async_actor_call_raises_cancelled_error_in_it(cluster) -> None:
    rt = cluster

    @rt.remote
    class Waiter:
        def __init__(self) -> None:
            self.saw_cancel = False

        async def wait(self) -> str:
            import asyncio

            self.started = True
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.saw_cancel = True
                raise
            return "finished"

        async def saw(self) -> bool:
            return self.saw_cancel

    waiter = Waiter.remote()
    ref = waiter.wait.remote()
    time.sleep(0.5)  # running: the call is in its sleep
    start = time.monotonic()
    rt.cancel(ref)
    with pytest.raises(rx.TaskCancelledError):
        rt.get(ref, timeout=10)
    assert time.monotonic() - start < 5
    assert rt.get(waiter.saw.remote(), timeout=10) is True  # the coroutine saw CancelledError


def test_cancelling_a_sync_actor_call_sets_is_canceled_and_keeps_the_actor(cluster) -> None:
    rt = cluster

    @rt.remote
    class Looper:
        def loop(self) -> int:
            context = rt.get_runtime_context()
            for i in range(600):
                if context.is_canceled():
                    return i
                time.sleep(0.05)
            return -1

        def ping(self) -> str:
            return "pong"

    looper = Looper.remote()
    ref = looper.loop.remote()
    time.sleep(0.5)
    rt.cancel(ref)
    with pytest.raises(rx.TaskCancelledError):
        rt.get(ref, timeout=10)
    assert rt.get(looper.ping.remote(), timeout=10) == "pong"  # not interrupted, not killed
    with pytest.raises(ValueError, match="force"):
        rt.cancel(looper.ping.remote(), force=True)
    with pytest.raises(RuntimeError, match="driver"):
        rt.get_runtime_context().is_canceled()


def test_a_queued_actor_call_cancelled_never_runs(cluster) -> None:
    rt = cluster

    @rt.remote
    class Busy:
        def __init__(self) -> None:
            self.ran: list[str] = []

        def work(self, name: str, seconds: float) -> str:
            time.sleep(seconds)
            self.ran.append(name)
            return name

        def log(self) -> list[str]:
            return self.ran

    busy = Busy.remote()
    first = busy.work.remote("first", 1.0)
    second = busy.work.remote("second", 0)
    rt.cancel(second)
    assert rt.get(first, timeout=10) == "first"
    with pytest.raises(rx.TaskCancelledError):
        rt.get(second, timeout=10)
    assert rt.get(busy.log.remote(), timeout=10) == ["first"]


MAIN_EXCEPTION = """
import runtime as rt

class Flaky(Exception):
    pass

rt.init(num_cpus=1)

@rt.remote(max_retries=2, retry_exceptions=[Flaky])
def sometimes(counter_path):
    import os
    n = int(open(counter_path).read()) if os.path.exists(counter_path) else 0
    open(counter_path, "w").write(str(n + 1))
    if n < 2:
        raise Flaky(f"attempt {n}")
    return n

@rt.remote
def always():
    raise Flaky("from the task")

try:
    rt.get(always.remote())
except Flaky as exc:
    print("caught", type(exc).__name__, isinstance(exc, rt.exceptions.RayTaskError), exc.cause.args)
print("retried", rt.get(sometimes.remote({path!r})))

class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("no pickling")

@rt.remote
def bad():
    raise Unpicklable("cannot travel")

try:
    rt.get(bad.remote())
except rt.exceptions.RayTaskError as exc:
    print("text", "Unpicklable" in str(exc), "cannot travel" in str(exc), exc.cause)
rt.shutdown()
"""


def test_an_exception_class_of_the_drivers_main_comes_back_as_itself(tmp_path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(MAIN_EXCEPTION.replace("{path!r}", repr(str(tmp_path / "count"))))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYCTL_")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env={**env, "RAYCTL_TEMP_DIR": str(tmp_path / "tmp")})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "caught RayTaskError(Flaky) True ('from the task',)" in lines
    assert "retried 2" in lines  # two Flaky attempts retried, the third returned
    assert "text True True None" in lines  # by its text, not a crashed worker


def test_rays_exception_names_and_hierarchy() -> None:
    assert issubclass(rx.RayTaskError, rx.RayError)
    assert issubclass(rx.ActorDiedError, rx.RayActorError)
    assert issubclass(rx.ActorUnavailableError, rx.RayActorError)
    assert issubclass(rx.OwnerDiedError, rx.ObjectLostError)
    assert issubclass(rx.GetTimeoutError, TimeoutError)
    for name in ("TaskCancelledError", "WorkerCrashedError", "ObjectStoreFullError",
                 "OutOfMemoryError"):
        assert issubclass(getattr(rx, name), rx.RayError), name
    # the names rayctl shipped first are the same classes
    assert rx.TaskError is rx.RayTaskError and rx.ActorError is rx.RayActorError
    assert rx.RuntimeBaseError is rx.RayError


def test_children_of_a_capturing_task_run_in_its_placement_group(cluster) -> None:
    """The group holds both of the node's CPUs: a child scheduled outside it would wait forever;
    captured, it runs in the group's bundle beside its parent."""
    rt = cluster
    from runtime.util import get_current_placement_group, placement_group, remove_placement_group
    from runtime.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = placement_group([{"CPU": 2}])
    assert pg.wait(10)
    try:
        @rt.remote(num_cpus=1)
        def child() -> str | None:
            group = get_current_placement_group()
            return group.id if group else None

        @rt.remote(num_cpus=1)
        def parent() -> tuple[str | None, str | None]:
            group = get_current_placement_group()
            return (group.id if group else None), rt.get(child.remote(), timeout=30)

        captured = parent.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
            pg, placement_group_capture_child_tasks=True)).remote()
        assert rt.get(captured, timeout=60) == (pg.id, pg.id)

        @rt.remote(num_cpus=0)
        def outside() -> str | None:
            group = get_current_placement_group()
            return group.id if group else None

        @rt.remote(num_cpus=1)
        def leaving_parent() -> str | None:  # Ray's way out: a strategy with no group
            return rt.get(outside.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement_group=None)).remote(), timeout=30)

        assert rt.get(leaving_parent.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
            pg, placement_group_capture_child_tasks=True)).remote(), timeout=60) is None
        assert get_current_placement_group() is None  # a driver captures nothing
    finally:
        remove_placement_group(pg)


def test_ray_ready_and_task_events_switched_off(cluster) -> None:
    rt = cluster
    from runtime.api import _core
    from runtime.protocol import gcs_pb2

    @rt.remote
    class Quiet:
        @rt.method(enable_task_events=False)
        def hidden(self) -> int:
            return 1

        def shown(self) -> int:
            return 2

    @rt.remote(enable_task_events=False)
    def unrecorded() -> int:
        return 3

    actor = Quiet.remote()
    assert rt.get(actor.__ray_ready__.remote(), timeout=30) is True  # constructed, answering
    assert rt.get([actor.hidden.remote(), actor.shown.remote(), unrecorded.remote(),
                   actor.shown.options(enable_task_events=False).remote()], timeout=30) == [1, 2, 3, 2]
    _core().events.flush_now()
    names = [t.name for t in _core().gcs_call("ListTasks", gcs_pb2.ListTasksRequest(limit=10_000)).tasks]
    assert names.count("Quiet.shown") == 1
    assert "Quiet.hidden" not in names and "unrecorded" not in names


def test_cancel_interrupts_a_task_blocked_in_sleep_and_the_worker_goes_on(cluster) -> None:
    rt = cluster

    @rt.remote(max_retries=0)
    def blocked() -> None:
        time.sleep(10e6)

    @rt.remote
    def pid() -> int:
        return os.getpid()

    ref = blocked.remote()
    time.sleep(1.0)  # running: in the sleep
    start = time.monotonic()
    rt.cancel(ref)
    with pytest.raises(rx.TaskCancelledError):
        rt.get(ref, timeout=10)
    assert time.monotonic() - start < 5
    # cancelled at once: wherever the cancel finds it (queued here, on its way to the worker,
    # queued there, starting), it never runs to the end (Ray's tasks example hung on this)
    for _ in range(10):
        ref = blocked.remote()
        rt.cancel(ref)
        with pytest.raises(rx.TaskCancelledError):
            rt.get(ref, timeout=10)
    assert rt.get(pid.remote(), timeout=10) > 0  # the node still runs tasks


def test_a_generator_task_streams_by_default(cluster) -> None:
    """As in Ray: a generator function's task streams without num_returns="streaming"; its
    ObjectRefGenerator works with `for`, `async for` and wait()."""
    import asyncio

    rt = cluster

    @rt.remote
    def count(n: int, pause: float = 0.0):
        for i in range(n):
            time.sleep(pause)
            yield i

    gen = count.remote(3)
    assert isinstance(gen, rt.ObjectRefGenerator)
    assert [rt.get(ref, timeout=30) for ref in gen] == [0, 1, 2]

    slow = count.remote(2, 0.5)
    ready, not_ready = rt.wait([slow], timeout=30)
    assert ready == [slow] and not_ready == []  # its first value is there
    assert rt.get(next(slow), timeout=30) == 0

    async def collect() -> list[int]:
        return [rt.get(ref, timeout=30) async for ref in count.remote(3)]

    assert asyncio.run(collect()) == [0, 1, 2]
    first, second, third = count.options(num_returns=3).remote(3)  # as many refs as asked
    assert rt.get([first, second, third], timeout=30) == [0, 1, 2]


def test_generator_actor_methods_stream_in_every_kind_of_actor(cluster) -> None:
    """As in Ray: a generator method's call returns an ObjectRefGenerator, in a plain, a
    threaded and an async actor (an async generator there), and its error is the next ref's."""
    rt = cluster

    @rt.remote
    class Plain:
        def count(self, n: int):
            yield from range(n)

        def broken(self):
            yield 0
            raise ValueError("after one")

    @rt.remote(max_concurrency=2)
    class Threaded:
        def count(self, n: int):
            yield from range(n)

    @rt.remote
    class Async:  # an async generator method alone makes it an async actor
        async def count(self, n: int):
            for i in range(n):
                yield i

    for cls in (Plain, Threaded, Async):
        actor = cls.remote()
        gen = actor.count.remote(3)
        assert isinstance(gen, rt.ObjectRefGenerator), cls
        assert [rt.get(ref, timeout=30) for ref in gen] == [0, 1, 2], cls
    broken = Plain.remote().broken.remote()
    assert rt.get(next(broken), timeout=30) == 0
    with pytest.raises(ValueError, match="after one"):
        rt.get(next(broken), timeout=30)


def test_actors_an_actor_created_die_with_it_unless_detached(cluster) -> None:
    """Fate-sharing as in Ray: when an actor's process dies (here SIGKILL, no restarts), the
    non-detached actors it created die too; a detached one lives on."""
    import signal as signals

    from polling import wait_for

    rt = cluster

    @rt.remote(num_cpus=0)
    class Child:
        def ping(self) -> str:
            return "pong"

    @rt.remote(num_cpus=0)
    class Parent:
        def make(self, detached: bool) -> object:
            options = {"lifetime": "detached", "name": "orphan-ok"} if detached else {}
            return Child.options(**options).remote()

        def pid(self) -> int:
            return os.getpid()

    parent = Parent.remote()
    child = rt.get(parent.make.remote(False), timeout=30)
    orphan = rt.get(parent.make.remote(True), timeout=30)
    assert rt.get([child.ping.remote(), orphan.ping.remote()], timeout=30) == ["pong", "pong"]
    os.kill(rt.get(parent.pid.remote(), timeout=30), signals.SIGKILL)

    def child_dead() -> bool:
        try:
            rt.get(child.ping.remote(), timeout=10)
            return False
        except rx.ActorDiedError as exc:
            assert "owner" in str(exc)
            return True
    wait_for(child_dead, 30, "the child actor to die with its owner")
    assert rt.get(orphan.ping.remote(), timeout=30) == "pong"  # detached: not owned
    rt.kill(orphan)

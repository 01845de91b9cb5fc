"""Actors on a real one-node cluster: state, ordering, async, named, restarts, kill."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from polling import wait_for

from runtime import exceptions as rx


def test_actor_keeps_state_and_orders_calls(cluster) -> None:
    rt = cluster

    @rt.remote
    class Counter:
        def __init__(self, start):
            self.n = start

        def incr(self, by=1):
            self.n += by
            return self.n

    c = Counter.remote(10)
    refs = [c.incr.remote() for _ in range(100)]
    assert rt.get(refs) == list(range(11, 111))


def test_actor_method_error_and_constructor_error(cluster) -> None:
    rt = cluster

    @rt.remote
    class Fragile:
        def fail(self):
            raise ZeroDivisionError("nope")

        def ok(self):
            return "ok"

    f = Fragile.remote()
    with pytest.raises(ZeroDivisionError):
        rt.get(f.fail.remote())
    assert rt.get(f.ok.remote()) == "ok", "an error in one call does not kill the actor"

    @rt.remote
    class Broken:
        def __init__(self):
            raise RuntimeError("constructor failed")

        def ping(self):
            return 1

    b = Broken.remote()
    with pytest.raises(rx.ActorDiedError, match="constructor failed"):
        rt.get(b.ping.remote(), timeout=20)


def test_async_actor_runs_calls_concurrently(cluster) -> None:
    rt = cluster

    @rt.remote
    class AsyncWaiter:
        async def wait(self, t):
            await asyncio.sleep(t)
            return t

    a = AsyncWaiter.remote()
    rt.get(a.wait.remote(0))
    start = time.monotonic()
    assert rt.get([a.wait.remote(0.5) for _ in range(10)]) == [0.5] * 10
    assert time.monotonic() - start < 3, "async actor calls should overlap"


def test_threaded_actor_with_max_concurrency(cluster) -> None:
    rt = cluster

    @rt.remote(max_concurrency=4)
    class Sleeper:
        def nap(self, t):
            time.sleep(t)
            return os.getpid()

    s = Sleeper.remote()
    rt.get(s.nap.remote(0))
    start = time.monotonic()
    rt.get([s.nap.remote(0.5) for _ in range(4)])
    assert time.monotonic() - start < 1.8


def test_named_actor_and_get_actor(cluster) -> None:
    rt = cluster

    @rt.remote
    class Registry:
        def __init__(self):
            self.items = {}

        def put(self, k, v):
            self.items[k] = v

        def get(self, k):
            return self.items.get(k)

    r = Registry.options(name="registry").remote()
    rt.get(r.put.remote("a", 1))
    same = rt.get_actor("registry")
    assert rt.get(same.get.remote("a")) == 1
    with pytest.raises(ValueError, match="already exists"):
        Registry.options(name="registry").remote()
    with pytest.raises(ValueError, match="no live actor"):
        rt.get_actor("nobody")


def test_actor_restarts_after_crash_then_dies(cluster) -> None:
    rt = cluster

    @rt.remote(max_restarts=1)
    class Phoenix:
        def pid(self):
            return os.getpid()

        def crash(self):
            os._exit(1)

    p = Phoenix.remote()
    first = rt.get(p.pid.remote())
    with pytest.raises(rx.ActorUnavailableError):  # its worker died with it; it restarts (as Ray)
        rt.get(p.crash.remote(), timeout=20)
    second = wait_for(lambda: _call_or_none(rt, p.pid), 20, "the restarted actor")
    assert second != first, "the actor should run in a new process after a restart"
    with pytest.raises(rx.ActorDiedError):
        rt.get(p.crash.remote(), timeout=20)
    with pytest.raises(rx.ActorDiedError):
        rt.get(p.pid.remote(), timeout=20)


def test_a_restarting_actor_is_unavailable_then_serves_again(cluster, tmp_path: Path) -> None:
    rt = cluster
    gate = tmp_path / "gate"
    gate.touch()

    @rt.remote(max_restarts=1)
    class Counter:
        def __init__(self, gate_path):
            deadline = time.monotonic() + 60  # a restart waits here until the test opens the gate
            while not os.path.exists(gate_path) and time.monotonic() < deadline:
                time.sleep(0.01)
            self.n = 0

        def incr(self):
            self.n += 1
            return self.n

        def pid(self):
            return os.getpid()

    c = Counter.remote(str(gate))
    assert rt.get(c.incr.remote(), timeout=20) == 1
    gate.unlink()
    os.kill(rt.get(c.pid.remote()), signal.SIGKILL)
    with pytest.raises(rx.ActorUnavailableError, match="unavailable"):
        rt.get(c.incr.remote(), timeout=20)
    with pytest.raises(rx.ActorUnavailableError, match="restarting"):
        rt.get(c.incr.remote(), timeout=20)  # fails at once: it is not queued behind the restart

    gate.touch()
    assert wait_for(lambda: _call_or_none(rt, c.incr), 30, "the restarted actor") == 1, (
        "a restarted actor starts from its constructor"
    )
    assert rt.get(c.incr.remote(), timeout=20) == 2

    os.kill(rt.get(c.pid.remote()), signal.SIGKILL)  # its one restart is used: gone for good
    with pytest.raises(rx.ActorDiedError, match="exited"):
        rt.get(c.incr.remote(), timeout=20)


def test_an_actor_without_restarts_is_dead_not_unavailable(cluster, tmp_path: Path) -> None:
    rt = cluster
    started = tmp_path / "started"

    @rt.remote
    class Mortal:
        def pid(self):
            return os.getpid()

        def nap(self, marker, t):
            open(marker, "w").close()
            time.sleep(t)

    m = Mortal.remote()
    pid = rt.get(m.pid.remote(), timeout=20)
    running = m.nap.remote(str(started), 30)
    wait_for(started.exists, 10, "the call to start")
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(rx.ActorDiedError, match="exited"):
        rt.get(running, timeout=20)  # lost with its worker, and the GCS says it is dead
    with pytest.raises(rx.ActorDiedError, match="exited"):
        rt.get(m.pid.remote(), timeout=20)


def test_a_broken_connection_to_a_live_actor_is_unavailable_then_heals(
    cluster, tmp_path: Path
) -> None:
    rt = cluster
    started = tmp_path / "started"

    @rt.remote
    class Tally:
        def __init__(self):
            self.n = 0

        def pid(self):
            return os.getpid()

        def incr(self, marker=None, t=0.0):
            self.n += 1
            if marker:
                open(marker, "w").close()
                time.sleep(t)
            return self.n

    t = Tally.remote()
    pid = rt.get(t.pid.remote(), timeout=20)
    running = t.incr.remote(str(started), 1.0)
    wait_for(started.exists, 10, "the call to start")
    assert _break_connections_to(pid) == 1
    with pytest.raises(rx.ActorUnavailableError, match="may or may not have run"):
        rt.get(running, timeout=20)
    assert rt.get(t.incr.remote(), timeout=20) == 2, (
        "the lost call did run, and the live actor is reached again over a new connection"
    )


def _call_or_none(rt, method):
    try:
        return rt.get(method.remote(), timeout=20)
    except rx.ActorUnavailableError:
        return None


def test_kill_actor(cluster) -> None:
    rt = cluster

    @rt.remote(max_restarts=5)
    class Victim:
        def ping(self):
            return "pong"

    v = Victim.remote()
    assert rt.get(v.ping.remote()) == "pong"
    rt.kill(v)
    with pytest.raises(rx.ActorDiedError, match="killed"):
        rt.get(v.ping.remote(), timeout=20)


def test_actor_handle_passed_to_a_task(cluster) -> None:
    rt = cluster

    @rt.remote
    class Box:
        def __init__(self):
            self.v = []

        def add(self, x):
            self.v.append(x)
            return len(self.v)

    @rt.remote
    def fill(box, n):
        return rt.get([box.add.remote(i) for i in range(n)])[-1]

    b = Box.remote()
    assert rt.get(fill.remote(b, 5)) == 5
    assert rt.get(b.add.remote(99)) == 6


def test_runtime_context_inside_actor(cluster) -> None:
    rt = cluster

    @rt.remote
    class Who:
        def ids(self):
            ctx = rt.get_runtime_context()
            return ctx.get_actor_id(), ctx.get_node_id()

    w = Who.remote()
    actor_id, node_id = rt.get(w.ids.remote())
    assert actor_id == w._actor_id and node_id == rt.nodes()[0]["NodeID"]


def _break_connections_to(pid: int) -> int:
    """Shut down this process's connections to `pid`'s listening ports, as a network fault
    would (both ends see the connection end; `pid` keeps running). Returns how many."""
    import socket

    import psutil

    ports = {c.laddr.port for c in psutil.Process(pid).net_connections("tcp")
             if c.status == psutil.CONN_LISTEN}
    broken = 0
    for c in psutil.Process().net_connections("tcp"):
        if c.raddr and c.raddr.port in ports and c.fd != -1:
            with socket.socket(fileno=os.dup(c.fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
            broken += 1
    return broken

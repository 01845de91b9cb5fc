"""The GCS killed with SIGKILL and started again loses nothing: it reloads its tables from Redis,
running actors keep answering, the node stays alive, new work is accepted."""

from __future__ import annotations

from gcs_process import kill_gcs, start_gcs_again
from polling import wait_for


def test_gcs_restart_loses_nothing(cluster, temp_dir) -> None:
    rt = cluster
    from runtime.api import _core
    from runtime.protocol import gcs_pb2

    cw = _core()

    @rt.remote
    class Keeper:
        def __init__(self):
            self.n = 0

        def incr(self):
            self.n += 1
            return self.n

    keeper = Keeper.options(name="keeper").remote()
    assert rt.get(keeper.incr.remote()) == 1
    cw.gcs_call("KvPut", gcs_pb2.KvRequest(ns="test", key="k", value=b"v", overwrite=True))
    node_id = rt.nodes()[0]["NodeID"]

    cmdline, cwd = kill_gcs(temp_dir)
    assert rt.get(keeper.incr.remote(), timeout=10) == 2, "actor calls do not go through the GCS"

    start_gcs_again(temp_dir, cmdline, cwd)
    wait_for(lambda: _kv_get(cw) == b"v", 20, "the KV entry after the restart")
    assert rt.get_actor("keeper") is not None
    nodes = rt.nodes()
    assert [n["NodeID"] for n in nodes] == [node_id] and nodes[0]["Alive"]

    @rt.remote
    def after():
        return "ok"

    assert rt.get(after.remote(), timeout=20) == "ok"
    again = Keeper.remote()
    assert rt.get(again.incr.remote(), timeout=20) == 1


def _kv_get(cw):
    import grpc

    from runtime.protocol import gcs_pb2

    try:
        return cw.gcs_call("KvGet", gcs_pb2.KvRequest(ns="test", key="k"), timeout=1).value
    except grpc.RpcError:
        return None


def test_calls_made_while_the_gcs_is_down_wait_for_it(cluster, temp_dir) -> None:
    """A driver that creates an actor or a placement group while the GCS is being restarted
    gets it once the GCS is back (the call retries), not an UNAVAILABLE error; and exactly one
    actor is made even if a call is repeated."""
    import threading

    from runtime.util import placement_group

    rt = cluster

    @rt.remote
    class Echo:
        def echo(self, value):
            return value

    cmdline, cwd = kill_gcs(temp_dir)
    results: dict[str, object] = {}
    calling = threading.Event()

    def while_down() -> None:
        calling.set()
        try:
            results["actor"] = rt.get(Echo.remote().echo.remote("back"), timeout=60)
            results["pg"] = placement_group([{"CPU": 0.1}]).wait(30)
        except Exception as exc:  # noqa: BLE001 - reported below
            results["error"] = exc

    caller = threading.Thread(target=while_down)
    caller.start()
    calling.wait(10)
    start_gcs_again(temp_dir, cmdline, cwd)
    caller.join(90)
    assert "error" not in results, results.get("error")
    assert results == {"actor": "back", "pg": True}


def test_a_repeated_actor_creation_is_the_same_actor(cluster) -> None:
    """What a retried CreateActor (its reply lost) does: nothing new; the live actor stays."""
    from runtime.api import _core
    from runtime.protocol import gcs_pb2
    from runtime.protocol.common_pb2 import ActorInfo

    rt = cluster

    @rt.remote
    class Once:
        def pid(self):
            import os

            return os.getpid()

    actor = Once.options(name="once").remote()
    pid = rt.get(actor.pid.remote(), timeout=30)
    cw = _core()
    info = cw.gcs_call("GetActor", gcs_pb2.GetActorRequest(name="once", namespace=cw.namespace)).actor
    again = cw.gcs_call("CreateActor", gcs_pb2.CreateActorRequest(actor=info))
    assert not again.error and again.actor.state == ActorInfo.ALIVE
    assert rt.get(actor.pid.remote()) == pid


def test_an_actor_that_dies_while_the_gcs_is_down_restarts_once_it_is_back(cluster, temp_dir) -> None:
    """The raylet's report of the death is retried until the restarted GCS takes it (it used to
    be tried once and lost: later calls on the actor hung)."""
    import os
    import signal

    rt = cluster

    @rt.remote(max_restarts=3, max_task_retries=3)  # calls wait for the restart
    class Worker:
        def pid(self):
            return os.getpid()

    actor = Worker.remote()
    first = rt.get(actor.pid.remote(), timeout=30)
    cmdline, cwd = kill_gcs(temp_dir)
    os.kill(first, signal.SIGKILL)
    start_gcs_again(temp_dir, cmdline, cwd)
    second = rt.get(actor.pid.remote(), timeout=30)
    assert second != first  # a new incarnation answers, once, not the dead one
    assert rt.get(actor.pid.remote(), timeout=10) == second

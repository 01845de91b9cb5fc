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

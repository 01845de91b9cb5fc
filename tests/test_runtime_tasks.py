"""Tasks, objects and errors on a real one-node cluster, written as a Ray user would."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from runtime import exceptions as rx


def test_tasks_return_values(cluster) -> None:
    rt = cluster

    @rt.remote
    def add(a, b=10):
        return a + b

    assert rt.get(add.remote(1)) == 11
    assert rt.get([add.remote(i, b=i) for i in range(50)]) == [2 * i for i in range(50)]


def test_object_refs_as_arguments_are_resolved_nested_ones_are_not(cluster) -> None:
    rt = cluster

    @rt.remote
    def double(x):
        return 2 * x

    @rt.remote
    def inspect_nested(box):
        inner = box["ref"]
        return type(inner).__name__, rt.get(inner)

    a = double.remote(21)
    assert rt.get(double.remote(a)) == 84
    kind, value = rt.get(inspect_nested.remote({"ref": a}))
    assert (kind, value) == ("ObjectRef", 42)
    put_ref = rt.put([1, 2, 3])
    assert rt.get(double.remote(put_ref)) == [1, 2, 3, 1, 2, 3]


def test_large_numpy_round_trip_is_zero_copy_and_read_only(cluster) -> None:
    rt = cluster
    array = np.arange(4_000_000, dtype=np.float64)  # 32 MB: goes to shared memory
    ref = rt.put(array)
    got = rt.get(ref)
    assert np.array_equal(got, array)
    assert not got.flags.writeable, "objects are immutable: a zero-copy view must be read-only"
    assert not got.flags.owndata

    @rt.remote
    def total(x):
        return float(x.sum())

    @rt.remote
    def make(n):
        return np.ones(n, dtype=np.uint8)

    assert rt.get(total.remote(ref)) == float(array.sum())
    big = rt.get(make.remote(20_000_000))
    assert big.nbytes == 20_000_000 and int(big[-1]) == 1


def test_multiple_returns(cluster) -> None:
    rt = cluster

    @rt.remote(num_returns=3)
    def three():
        return 1, "two", [3]

    a, b, c = three.remote()
    assert rt.get([a, b, c]) == [1, "two", [3]]


def test_remote_exception_keeps_type_and_traceback(cluster) -> None:
    rt = cluster

    @rt.remote(max_retries=0)
    def boom(x):
        raise ValueError(f"bad value {x}")

    with pytest.raises(ValueError) as info:
        rt.get(boom.remote(7))
    err = info.value
    assert isinstance(err, rx.TaskError)
    assert isinstance(err.cause, ValueError)
    assert "bad value 7" in str(err) and "in boom" in err.remote_traceback


def test_error_propagates_through_dependent_tasks(cluster) -> None:
    rt = cluster

    @rt.remote
    def fail():
        raise KeyError("missing")

    @rt.remote
    def use(x):
        return x

    with pytest.raises(KeyError):
        rt.get(use.remote(fail.remote()))


def test_get_timeout(cluster) -> None:
    rt = cluster

    @rt.remote
    def slow():
        time.sleep(5)

    start = time.monotonic()
    with pytest.raises(rx.GetTimeoutError):
        rt.get(slow.remote(), timeout=0.2)
    assert time.monotonic() - start < 2


def test_wrong_arguments_fail_at_submit(cluster) -> None:
    rt = cluster

    @rt.remote
    def one(a):
        return a

    with pytest.raises(TypeError, match="wrong arguments for"):
        one.remote(1, 2)
    with pytest.raises(TypeError, match="cannot be called directly"):
        one(1)


def test_unpicklable_argument_is_named(cluster) -> None:
    rt = cluster
    import threading

    @rt.remote
    def take(a, lock):
        return a

    with pytest.raises(TypeError, match="argument 1"):
        take.remote(1, threading.Lock())


def test_wait(cluster) -> None:
    rt = cluster

    @rt.remote
    def sleepy(t):
        time.sleep(t)
        return t

    fast, slow = sleepy.remote(0), sleepy.remote(3)
    ready, not_ready = rt.wait([fast, slow], num_returns=1, timeout=2)
    assert ready == [fast] and not_ready == [slow]
    ready, not_ready = rt.wait([fast, slow], num_returns=2, timeout=0.1)
    assert ready == [fast] and not_ready == [slow]
    # wait() leaves no wake-up behind (they piled up: one per re-check every 50 ms, per call)
    from runtime.api import _core

    rt.wait([slow], timeout=0.5)
    with pytest.raises(rt.exceptions.GetTimeoutError):
        rt.get(slow, timeout=0.1)
    entry = _core().refs.get_entry(slow.id)
    assert entry is not None and entry.waiters == []
    rt.cancel(slow, force=True)


def test_worker_crash_is_retried_then_reported(cluster, tmp_path) -> None:
    rt = cluster
    marker = tmp_path / "crashed-once"

    @rt.remote(max_retries=2)
    def crash_once(path):
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)
        return "survived"

    assert rt.get(crash_once.remote(str(marker)), timeout=30) == "survived"

    @rt.remote(max_retries=0)
    def always_crash():
        os._exit(1)

    with pytest.raises(rx.WorkerCrashedError):
        rt.get(always_crash.remote(), timeout=30)


def test_retry_exceptions(cluster, tmp_path) -> None:
    rt = cluster
    counter = tmp_path / "count"
    counter.write_text("0")

    @rt.remote(max_retries=3, retry_exceptions=True)
    def flaky(path):
        n = int(open(path).read()) + 1
        open(path, "w").write(str(n))
        if n < 3:
            raise RuntimeError("flaky")
        return n

    assert rt.get(flaky.remote(str(counter)), timeout=30) == 3


def test_cancel_a_running_task(cluster) -> None:
    rt = cluster

    @rt.remote(max_retries=0)
    def forever():
        while True:
            time.sleep(0.01)

    ref = forever.remote()
    time.sleep(0.3)
    rt.cancel(ref)
    with pytest.raises((rx.TaskCancelledError, rx.TaskError)):
        rt.get(ref, timeout=10)


def test_resources_and_custom_resources(cluster) -> None:
    rt = cluster
    total = rt.cluster_resources()
    assert total["CPU"] == 2 and total["widget"] == 2

    @rt.remote(resources={"widget": 1}, num_cpus=0)
    def uses_widget():
        return rt.get_runtime_context().get_node_id()

    assert rt.get(uses_widget.remote()) == rt.nodes()[0]["NodeID"]


def test_prints_are_streamed_with_a_prefix(cluster, capfd) -> None:
    rt = cluster

    @rt.remote
    def chatty(i):
        print(f"hello from task {i}")
        return i

    rt.get([chatty.remote(i) for i in range(3)])

    def seen() -> bool:
        out = capfd.readouterr().out
        seen.text += out  # type: ignore[attr-defined]
        return all(f"hello from task {i}" in seen.text for i in range(3))  # type: ignore[attr-defined]

    seen.text = ""  # type: ignore[attr-defined]
    from polling import wait_for

    wait_for(seen, 5, "task output in the driver's terminal")
    line = next(x for x in seen.text.splitlines() if "hello from task 0" in x)  # type: ignore[attr-defined]
    assert line.startswith("(chatty pid=") and "node=" in line


def test_infeasible_task_stays_pending_and_warns(cluster, capfd) -> None:
    rt = cluster

    @rt.remote(num_gpus=8)
    def needs_gpus():
        return 1

    ref = needs_gpus.remote()
    ready, _ = rt.wait([ref], timeout=3)
    assert not ready, "an infeasible task must stay pending (it is demand), not fail"
    from polling import wait_for

    text = []
    wait_for(
        lambda: text.append(capfd.readouterr().err) or "GPU: 8" in "".join(text),
        10,
        "infeasible warning",
    )
    rt.cancel(ref)


def test_nested_tasks_do_not_deadlock_a_small_node(cluster) -> None:
    rt = cluster

    @rt.remote
    def leaf(x):
        return x

    @rt.remote
    def middle(x):
        return rt.get(leaf.remote(x)) + 1

    @rt.remote
    def top(x):
        return sum(rt.get([middle.remote(x + i) for i in range(3)]))

    # 2 CPUs, 2 levels of waiting parents: only works if a waiting task lends its CPU
    assert rt.get([top.remote(0), top.remote(10)], timeout=60) == [6, 36]


def test_objects_are_freed_once_nothing_can_reach_them(cluster) -> None:
    import gc

    rt = cluster
    from polling import wait_for

    from runtime.api import _core

    cw = _core()

    @rt.remote
    def keep_nothing(box):
        return len(box)

    @rt.remote
    class Holder:
        def __init__(self):
            self.kept = None

        def keep(self, box):
            self.kept = box[0]
            return True

        def drop(self):
            self.kept = None
            return True

    inner = rt.put(np.zeros(1_000_000))  # 8 MB: in the object store
    inner_id = inner.id
    outer = rt.put([inner])  # a value holding a ref keeps it alive
    assert rt.get(keep_nothing.remote([inner])) == 1
    holder = Holder.remote()
    assert rt.get(holder.keep.remote([inner]))
    del inner
    gc.collect()
    assert cw.refs.get_entry(inner_id) is not None, "still reachable through `outer` and the actor"
    del outer
    gc.collect()
    assert cw.refs.get_entry(inner_id) is not None, "the actor still borrows it"
    assert rt.get(holder.drop.remote())
    wait_for(lambda: cw.refs.get_entry(inner_id) is None, 10, "the object to be freed after the last borrower dropped it")

    plain = rt.put(np.ones(1_000_000))
    plain_id = plain.id
    assert float(rt.get(keep_nothing.remote([plain]))) == 1
    del plain
    gc.collect()
    wait_for(lambda: cw.refs.get_entry(plain_id) is None, 10, "an object nobody holds to be freed")


def test_store_over_capacity_spills_and_restores_transparently(cluster) -> None:
    rt = cluster  # object_store_memory is 256 MiB for this cluster
    arrays = [np.full(12_000_000, i, dtype=np.float64) for i in range(4)]  # 4 x 96 MB
    refs = [rt.put(a) for a in arrays]

    @rt.remote
    def first_and_sum(a):
        return float(a[0]), float(a.sum())

    for i, ref in enumerate(refs):
        assert rt.get(first_and_sum.remote(ref), timeout=60) == (float(i), float(i) * 12_000_000)
    for i, ref in enumerate(refs):
        assert int(rt.get(ref)[-1]) == i


def test_refs_passed_on_and_returned_nested_are_freed_when_unreachable(cluster) -> None:
    import gc

    rt = cluster
    from polling import wait_for

    from runtime.api import _core

    cw = _core()

    @rt.remote
    class Keeper:
        def __init__(self):
            self.kept = None

        def keep(self, box):
            self.kept = box
            return True

        def drop(self):
            self.kept = None
            return True

    @rt.remote
    def relay(box, keeper):  # borrows the ref, passes it on nested, then lets go
        return rt.get(keeper.keep.remote(box))

    keeper = Keeper.remote()
    x = rt.put(np.zeros(100_000))
    x_id = x.id
    assert rt.get(relay.remote([x], keeper))
    del x
    gc.collect()
    assert cw.refs.get_entry(x_id) is not None, "the actor, two hops away, still holds it"
    assert rt.get(keeper.drop.remote())
    wait_for(lambda: cw.refs.get_entry(x_id) is None, 10, "the ref passed on to be freed")

    @rt.remote
    def make_box():  # the worker owns the inner object and returns it nested
        return [rt.put(np.ones(50_000))]

    box = rt.get(make_box.remote())
    assert float(rt.get(box[0]).sum()) == 50_000.0
    used = _store_used(rt)
    del box
    gc.collect()
    wait_for(lambda: _store_used(rt) <= used - 400_000, 10,
             "the worker to free the object it returned nested once the caller dropped it")


def _store_used(rt) -> int:

    from runtime.api import _core
    from runtime.protocol import raylet_pb2, raylet_pb2_grpc

    node = rt.nodes()[0]
    from runtime.grpc_auth import open_channel

    with open_channel(f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}", _core().token) as channel:
        stats = raylet_pb2_grpc.RayletStub(channel).GetNodeStats(
            raylet_pb2.RayletEmpty(), timeout=5)
    return int(stats.object_store_used)


def test_a_ref_returned_nested_by_a_borrower_stays_alive_then_is_freed(cluster) -> None:
    import gc

    rt = cluster
    from polling import wait_for

    from runtime.api import _core

    cw = _core()

    @rt.remote
    class Shelf:
        def __init__(self):
            self.box = None

        def keep(self, box):
            self.box = box
            return True

        def give(self):  # returns a ref the driver owns, to whoever calls
            return self.box

        def drop(self):
            self.box = None
            return True

    @rt.remote
    def read_through(shelf):
        box = rt.get(shelf.give.remote())  # this worker now borrows the driver's object
        return float(rt.get(box[0]).sum())

    shelf = Shelf.remote()
    x = rt.put(np.ones(100_000))
    x_id = x.id
    assert rt.get(shelf.keep.remote([x]))
    del x
    gc.collect()
    assert rt.get(read_through.remote(shelf)) == 100_000.0
    assert rt.get(shelf.drop.remote())
    wait_for(lambda: cw.refs.get_entry(x_id) is None, 10, "the object to be freed once nobody holds it")


def test_wait_inside_a_task_on_refs_it_does_not_own(cluster) -> None:
    rt = cluster

    @rt.remote
    def slow(t):
        time.sleep(t)
        return t

    @rt.remote
    def waiter(box):
        fast_ref, slow_ref = box
        ready, not_ready = rt.wait([fast_ref, slow_ref], num_returns=1, timeout=5)
        return [r == fast_ref for r in ready], len(not_ready)

    fast, slower = slow.remote(0), slow.remote(4)
    rt.get(fast)
    assert rt.get(waiter.remote([fast, slower]), timeout=30) == ([True], 1)
    rt.cancel(slower, force=True)


def test_bad_options_fail_at_once_and_say_what_to_do() -> None:
    """At decoration time, before any cluster is involved (as Ray's checks)."""
    import runtime as rt

    with pytest.raises(TypeError, match="did you mean 'num_cpus'"):
        rt.remote(num_cpu=1)(lambda: 1)
    with pytest.raises(ValueError, match='not supported here: use num_returns="streaming"'):
        rt.remote(num_returns="dynamic")(lambda: 1)
    with pytest.raises(ValueError, match="integer >= 0, got -1"):
        rt.remote(num_returns=-1)(lambda: 1)


def test_node_ip_address_is_the_nodes_own(cluster) -> None:
    rt = cluster
    from runtime.util import get_node_ip_address

    @rt.remote
    def where():
        return get_node_ip_address()

    node_address = rt.nodes()[0]["NodeManagerAddress"]
    assert get_node_ip_address() == node_address == rt.get(where.remote())

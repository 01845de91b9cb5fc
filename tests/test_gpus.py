"""GPU devices, as Ray hands them out: on a node with two (here: a node that says it has two),
two one-GPU tasks run at once on different devices, each seeing only its own in
CUDA_VISIBLE_DEVICES and get_gpu_ids(); fractions share a device; an actor keeps its device for
life; a task without GPUs gets none (an empty CUDA_VISIBLE_DEVICES, as Ray sets it), also on a
worker whose previous task had one."""

from __future__ import annotations

import pytest
from polling import wait_for

from runtime.raylet.gpus import GpuSlots


def test_whole_gpus_are_distinct_devices_and_fractions_pack_onto_one() -> None:
    slots = GpuSlots(2)
    first, second = slots.assign(1), slots.assign(1)
    assert {first, second} == {("0",), ("1",)} and slots.assign(1) is None
    slots.release(("0",), 1)
    assert slots.assign(0.5) == ("0",) and slots.assign(0.5) == ("0",)  # packed on one device
    assert slots.assign(0.5) is None
    assert slots.assign(0) == ()


def test_a_node_limited_by_cuda_visible_devices_hands_out_those_ids() -> None:
    slots = GpuSlots(2, "3,5")
    assert slots.assign(2) == ("3", "5")


@pytest.fixture(scope="module")
def gpu_cluster():
    import runtime as rt
    from runtime.cluster_utils import Cluster

    if rt.is_initialized():
        rt.shutdown()
    cluster = Cluster(head_node_args={"num_cpus": 4, "num_gpus": 2})
    try:
        cluster.connect()
        yield rt
    finally:
        cluster.shutdown()


def test_two_one_gpu_tasks_run_at_once_on_different_devices(gpu_cluster, tmp_path) -> None:
    rt = gpu_cluster

    @rt.remote(num_gpus=1)
    def device(path: str, peers: int) -> tuple[str, list]:
        import os
        import time

        open(f"{path}-{os.getpid()}", "w").close()
        deadline = time.monotonic() + 20
        while len(os.listdir(os.path.dirname(path))) < peers:  # all of them running at once
            assert time.monotonic() < deadline, "the tasks did not run at the same time"
            time.sleep(0.01)
        return os.environ["CUDA_VISIBLE_DEVICES"], rt.get_gpu_ids()

    (tmp_path / "whole").mkdir()
    (tmp_path / "halves").mkdir()
    results = rt.get([device.remote(str(tmp_path / "whole" / "running"), 2) for _ in range(2)],
                     timeout=60)
    assert sorted(results) == [("0", [0]), ("1", [1])]

    halves = device.options(num_gpus=0.5)
    results = rt.get([halves.remote(str(tmp_path / "halves" / "running"), 2) for _ in range(2)],
                     timeout=60)
    assert results[0] == results[1] and results[0][1] in ([0], [1])  # at once, on one device

    @rt.remote(num_gpus=0)
    def none() -> tuple[str | None, list]:
        import os

        return os.environ.get("CUDA_VISIBLE_DEVICES"), rt.get_gpu_ids()

    # as in Ray: no device for a task that asked for none, also on a worker that ran GPU tasks
    assert all(r == ("", []) for r in rt.get([none.remote() for _ in range(8)]))
    assert rt.get_gpu_ids() == []  # the driver


def test_an_actor_keeps_its_device_and_gives_it_back_when_it_dies(gpu_cluster) -> None:
    rt = gpu_cluster

    @rt.remote(num_gpus=2)
    class Trainer:
        def devices(self) -> tuple[str, list]:
            import os

            return os.environ["CUDA_VISIBLE_DEVICES"], rt.get_gpu_ids()

    trainer = Trainer.remote()
    assert rt.get(trainer.devices.remote(), timeout=30) == ("0,1", [0, 1])
    assert rt.get(trainer.devices.remote()) == ("0,1", [0, 1])
    rt.kill(trainer)

    @rt.remote(num_gpus=2)
    def both() -> str:
        import os

        return os.environ["CUDA_VISIBLE_DEVICES"]

    wait_for(lambda: rt.available_resources().get("GPU") == 2.0, 20, "the actor's GPUs back")
    assert rt.get(both.remote(), timeout=30) == "0,1"


def test_a_task_in_a_placement_group_bundle_gets_a_device(gpu_cluster) -> None:
    rt = gpu_cluster
    from runtime.util import (
        PlacementGroupSchedulingStrategy,
        placement_group,
        remove_placement_group,
    )

    pg = placement_group([{"GPU": 1, "CPU": 1}])
    rt.get(pg.ready(), timeout=20)

    @rt.remote(num_gpus=1)
    def device() -> list:
        return rt.get_gpu_ids()

    inside = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)
    assert rt.get(device.options(scheduling_strategy=inside).remote(), timeout=30) in ([0], [1])
    remove_placement_group(pg)

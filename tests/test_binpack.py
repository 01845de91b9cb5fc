"""binpack: bulk first-fit onto known nodes, new-node packing, type choice, and speed."""

from __future__ import annotations

import time

import pytest

from autoscaler.model import NodeTypeSpec, Shape
from autoscaler.planner import plan
from autoscaler.policies.binpack import (
    Budget,
    FreePool,
    RowId,
    RowKind,
    TypeChooser,
    fit_count,
    pack_new_nodes,
)
from bench.planner import generate, to_snapshot

CPU1 = Shape.of({"CPU": 1})


def rows(*node_ids: str) -> list[RowId]:
    return [RowId.node(n) for n in node_ids]


def types(*specs: tuple[str, dict[str, float]]) -> list[NodeTypeSpec]:
    return [NodeTypeSpec(name, res, max_workers=10_000) for name, res in specs]


def chooser(*specs: tuple[str, dict[str, float]]) -> TypeChooser:
    all_types = types(*specs)
    return TypeChooser(all_types, [t.name for t in all_types])


def roomy() -> Budget:
    return Budget({"cpu4": 10**9, "gpu": 10**9}, 10**9)


@pytest.mark.parametrize(
    ("free", "shape", "copies"),
    [
        ({"CPU": 4}, {"CPU": 1}, 4),
        ({"CPU": 4, "GPU": 1}, {"CPU": 1, "GPU": 1}, 1),
        ({"CPU": 0.3}, {"CPU": 0.1}, 3),  # float drift must not lose a copy
        ({"CPU": 4}, {"GPU": 1}, 0),
        ({"CPU": 3.9}, {"CPU": 2}, 1),
    ],
)
def test_fit_count(free: dict[str, float], shape: dict[str, float], copies: int) -> None:
    assert fit_count(free, Shape.of(shape)) == copies


def test_pool_first_fit_in_bulk() -> None:
    pool = FreePool(rows("a", "b", "c"), [{"CPU": 4}, {"CPU": 4}, {"CPU": 4}])
    assert pool.place(CPU1, 6) == 6
    assert pool.free[:, 0].tolist() == [0.0, 2.0, 4.0]
    assert pool.used_ids() == rows("a", "b")
    assert pool.place(Shape.of({"CPU": 3}), 5) == 1  # only c has 3 left
    assert pool.place(Shape.of({"GPU": 1}), 1) == 0  # no row knows GPU


def test_pool_multi_resource_skips_rows_without_it() -> None:
    pool = FreePool(rows("cpu", "gpu"), [{"CPU": 8}, {"CPU": 8, "GPU": 2}])
    assert pool.place(Shape.of({"CPU": 1, "GPU": 1}), 5) == 2
    assert pool.used_ids() == rows("gpu")


def test_pool_place_distinct_and_restore() -> None:
    pool = FreePool(rows("a", "b"), [{"CPU": 4}, {"CPU": 4}])
    saved = pool.save()
    left = pool.place_distinct([CPU1, CPU1, CPU1])
    assert left == [CPU1]
    assert pool.free[:, 0].tolist() == [3.0, 3.0]
    pool.restore(saved)
    assert pool.free[:, 0].tolist() == [4.0, 4.0] and pool.used_ids() == []


def test_pool_add_rows_with_new_resources() -> None:
    pool = FreePool(rows("a"), [{"CPU": 1}])
    planned = RowId(RowKind.PLANNED, "gpu", 0)
    pool.add([planned], [{"CPU": 1, "GPU": 1}])
    assert pool.place(Shape.of({"GPU": 1}), 2) == 1
    assert pool.used_ids() == [planned]
    assert pool.used_nodes() == []  # a planned node is not a node in service (yet)
    pool.place(CPU1, 1)
    assert pool.used_nodes() == ["a"]


def test_new_nodes_fill_and_leftover() -> None:
    new = pack_new_nodes([(CPU1, 10)], chooser(("cpu4", {"CPU": 4})), roomy())
    assert new.counts == {"cpu4": 3}
    assert new.unplaced == []
    assert sorted((t, f["CPU"], n) for t, f, n in new.leftovers) == [
        ("cpu4", 0.0, 2),
        ("cpu4", 2.0, 1),
    ]


def test_new_nodes_are_opened_in_bulk() -> None:
    new = pack_new_nodes([(CPU1, 100_000)], chooser(("cpu4", {"CPU": 4})), roomy())
    assert new.counts == {"cpu4": 25_000}
    assert len(new.leftovers) == 1  # one identical batch, not 25,000 iterations


def test_new_nodes_top_up_with_smaller_shapes() -> None:
    demand = [(Shape.of({"CPU": 3}), 2), (CPU1, 2)]
    new = pack_new_nodes(demand, chooser(("cpu4", {"CPU": 4})), roomy())
    assert new.counts == {"cpu4": 2}


def test_gpu_node_spare_cpus_take_cpu_work() -> None:
    demand = [(Shape.of({"CPU": 1, "GPU": 1}), 1), (CPU1, 3)]
    new = pack_new_nodes(
        demand, chooser(("gpu", {"CPU": 4, "GPU": 1}), ("cpu4", {"CPU": 4})), roomy()
    )
    assert new.counts == {"gpu": 1}


def test_gpu_type_not_chosen_for_cpu_work_while_a_cpu_type_fits() -> None:
    pick = chooser(("gpu", {"CPU": 8, "GPU": 1}), ("cpu4", {"CPU": 4}))
    assert not pick.allowed("gpu", CPU1)
    assert pick.allowed("gpu", Shape.of({"CPU": 6}))  # no CPU type fits it
    assert pick.allowed("gpu", Shape.of({"CPU": 1, "GPU": 1}))


def test_one_per_node_and_budget() -> None:
    pick = chooser(("cpu4", {"CPU": 4}))
    assert pack_new_nodes([(CPU1, 3)], pick, roomy(), one_per_node=True).counts == {"cpu4": 3}
    capped = pack_new_nodes([(CPU1, 3)], pick, Budget({"cpu4": 2}, 100), one_per_node=True)
    assert capped.counts == {"cpu4": 2}
    assert capped.unplaced == [(CPU1, 1)]


def test_budget_global_room_wins() -> None:
    budget = Budget({"cpu4": 5}, 2)
    new = pack_new_nodes([(Shape.of({"CPU": 4}), 5)], chooser(("cpu4", {"CPU": 4})), budget)
    assert new.counts == {"cpu4": 2} and budget.total == 0


def test_planner_is_fast_on_the_benchmark_input() -> None:
    # 10,000 queued shapes x 1,000 nodes x 20 types: ~35 ms here (Ray's v1 planner: ~80 s).
    # The bound is loose because the machine is shared; it catches a return to per-task loops.
    snapshot, config = to_snapshot(generate(seed=0))
    plan(snapshot, config, now=1.0)  # warm caches and imports
    start = time.perf_counter()
    result = plan(snapshot, config, now=1.0)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, f"planner took {elapsed * 1000:.0f} ms"
    assert 0 < sum(result.launch_counts().values()) < 2_000

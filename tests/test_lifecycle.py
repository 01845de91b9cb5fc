"""lifecycle: every legal edge, every illegal one, history, timeouts, JSON (and the migration of
old status names), the in-memory store's CAS."""

from __future__ import annotations

import itertools

import pytest

from autoscaler.lifecycle import (
    LEGACY_NAMES,
    TRANSITIONS,
    IllegalTransition,
    InstanceRecord,
    InstanceStatus,
    StaleRecord,
    StatusChange,
    Timeouts,
    from_json,
    new_instance,
    timed_out,
    to_json,
    transition,
)
from autoscaler.lifecycle_store import InMemoryLifecycleStore

S = InstanceStatus


def record_in(status: InstanceStatus, at: float = 0.0) -> InstanceRecord:
    return InstanceRecord("i-1", "cpu4", history=(StatusChange(status, at, "test setup"),))


def walk(*steps: tuple[InstanceStatus, float]) -> InstanceRecord:
    record = new_instance("i-1", "cpu4", 0.0, "min_workers", launch_config_hash="h1")
    for status, at in steps:
        record = transition(record, status, at, f"to {status.value}")
    return record


@pytest.mark.parametrize(("old", "new"), sorted(TRANSITIONS), ids=lambda s: s.value)
def test_every_legal_edge(old: InstanceStatus, new: InstanceStatus) -> None:
    moved = transition(record_in(old), new, 5.0, "because")
    assert moved.status == new
    assert moved.history[-1] == StatusChange(new, 5.0, "because")
    assert moved.history[0].status == old


ILLEGAL = [(a, b) for a, b in itertools.product(S, S) if (a, b) not in TRANSITIONS]


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=lambda s: s.value)
def test_every_illegal_edge_raises(old: InstanceStatus, new: InstanceStatus) -> None:
    with pytest.raises(IllegalTransition, match=f"{old.value} -> {new.value} is not a legal"):
        transition(record_in(old), new, 5.0, "bug")


def test_every_edge_documented_and_graph_sound() -> None:
    assert all(reason.strip() for reason in TRANSITIONS.values())
    assert not [b for (a, b) in TRANSITIONS if a == S.TERMINATED]  # terminal
    reachable, frontier = {S.QUEUED}, [S.QUEUED]
    while frontier:
        here = frontier.pop()
        for a, b in TRANSITIONS:
            if a == here and b not in reachable:
                reachable.add(b)
                frontier.append(b)
    assert reachable == set(S)
    for status in S:  # no state from which an instance can never be cleaned up
        seen, todo = {status}, [status]
        while todo:
            here = todo.pop()
            for a, b in TRANSITIONS:
                if a == here and b not in seen:
                    seen.add(b)
                    todo.append(b)
        assert S.TERMINATED in seen, status


def test_history_kept_and_fields_set() -> None:
    record = walk((S.REQUESTED, 1.0))
    record = transition(record, S.ALLOCATED, 2.0, "listed", cloud_instance_id="i-abc")
    record = walk_on(record, (S.RAYLET_INSTALLING, 3.0), (S.RAYLET_RUNNING, 9.0), (S.RAYLET_DRAINING, 50.0))
    assert [c.status for c in record.history] == [
        S.QUEUED,
        S.REQUESTED,
        S.ALLOCATED,
        S.RAYLET_INSTALLING,
        S.RAYLET_RUNNING,
        S.RAYLET_DRAINING,
    ]
    assert record.history[0].reason == "min_workers"
    assert record.cloud_instance_id == "i-abc" and record.launch_config_hash == "h1"
    assert record.since == 50.0


def walk_on(record: InstanceRecord, *steps: tuple[InstanceStatus, float]) -> InstanceRecord:
    for status, at in steps:
        record = transition(record, status, at, f"to {status.value}")
    return record


TIMEOUTS = Timeouts(launch_s=60, install_s=300, drain_s=120, terminate_s=30)


@pytest.mark.parametrize(
    ("record", "now", "expired"),
    [
        (walk((S.REQUESTED, 10.0)), 70.0, False),
        (walk((S.REQUESTED, 10.0)), 70.1, True),
        # install budget counts from ALLOCATED, through INSTALLING
        (walk((S.REQUESTED, 1.0), (S.ALLOCATED, 10.0), (S.RAYLET_INSTALLING, 200.0)), 309.0, False),
        (walk((S.REQUESTED, 1.0), (S.ALLOCATED, 10.0), (S.RAYLET_INSTALLING, 200.0)), 311.0, True),
        (
            walk((S.REQUESTED, 1.0), (S.ALLOCATED, 2.0), (S.RAYLET_INSTALLING, 3.0), (S.RAYLET_RUNNING, 4.0)),
            10**9,
            False,
        ),
        # a rejected drain restarts the drain clock
        (
            walk(
                (S.REQUESTED, 1),
                (S.ALLOCATED, 2),
                (S.RAYLET_INSTALLING, 3),
                (S.RAYLET_RUNNING, 4),
                (S.RAYLET_DRAINING, 10),
                (S.RAYLET_RUNNING, 20),
                (S.RAYLET_DRAINING, 100),
            ),
            200.0,
            False,
        ),
        (
            walk(
                (S.REQUESTED, 1),
                (S.ALLOCATED, 2),
                (S.RAYLET_INSTALLING, 3),
                (S.RAYLET_RUNNING, 4),
                (S.RAYLET_DRAINING, 10),
            ),
            131.0,
            True,
        ),
        (record_in(S.TERMINATING, 0.0), 31.0, True),
        (record_in(S.TERMINATED, 0.0), 10**9, False),
    ],
)
def test_timed_out(record: InstanceRecord, now: float, expired: bool) -> None:
    assert timed_out(record, now, TIMEOUTS) is expired


def test_json_round_trip() -> None:
    record = transition(
        walk((S.REQUESTED, 1.5)), S.ALLOCATED, 2.0, "listed", cloud_instance_id="i-x"
    )
    record = transition(record, S.RAYLET_INSTALLING, 3.0, "updater", request_id="req-1")
    assert from_json(to_json(record)) == record
    assert from_json(to_json(record).encode()) == record


def test_corrupt_json_names_the_problem() -> None:
    with pytest.raises(ValueError, match="corrupt instance record"):
        from_json('{"instance_id": "i-1", "node_type": "x", "history": [["NOPE", 1, "r"]]}')


def test_store_is_compare_and_set() -> None:
    store = InMemoryLifecycleStore()
    queued = new_instance("i-1", "cpu4", 0.0, "demand")
    store.put(queued)
    with pytest.raises(StaleRecord, match="expected status <absent>, found QUEUED"):
        store.put(queued)  # a second monitor creating the same instance
    requested = transition(queued, S.REQUESTED, 1.0, "sent")
    store.put(requested, expected=S.QUEUED)
    with pytest.raises(StaleRecord):
        store.put(transition(queued, S.TERMINATED, 2.0, "cancel"), expected=S.QUEUED)
    assert store.get("i-1") == requested
    store.put(new_instance("i-0", "cpu4", 0.0, "demand"))
    assert [r.instance_id for r in store.all()] == ["i-0", "i-1"]
    assert store.get("nope") is None


def test_every_status_name_says_its_layer_and_old_names_map_to_one() -> None:
    assert {s.value for s in S} == {
        "QUEUED", "REQUESTED", "ALLOCATED", "RAYLET_INSTALLING", "RAYLET_RUNNING",
        "RAYLET_DRAINING", "TERMINATING", "TERMINATED", "ALLOCATION_FAILED",
        "RAYLET_INSTALL_FAILED", "TERMINATION_FAILED",
    }
    assert not set(LEGACY_NAMES) & {s.value for s in S}  # an old name never means a new state


def test_records_written_under_the_old_names_are_migrated_when_read() -> None:
    old = (
        '{"instance_id":"i-1","node_type":"cpu","launch_config_hash":"h","request_id":"i-1",'
        '"cloud_instance_id":"fake-1","history":[["QUEUED",1,"min_workers"],'
        '["REQUESTED",2,"sent"],["ALLOCATED",3,"listed"],["INSTALLING",4,"updater"],'
        '["RUNNING",5,"registered"],["DRAINING",6,"idle"],["TERMINATING",7,"drained"],'
        '["TERMINATE_FAILED",8,"raised"]]}'
    )
    record = from_json(old)
    assert [c.status for c in record.history] == [
        S.QUEUED, S.REQUESTED, S.ALLOCATED, S.RAYLET_INSTALLING, S.RAYLET_RUNNING,
        S.RAYLET_DRAINING, S.TERMINATING, S.TERMINATION_FAILED,
    ]
    assert record.gang == "" and record.request_id == "i-1"
    for old_name, new in LEGACY_NAMES.items():
        failed = old.replace('"TERMINATE_FAILED"', f'"{old_name}"')
        assert from_json(failed).status is new
    assert to_json(record).count("RAYLET_") == 3  # written back under today's names

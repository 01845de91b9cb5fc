"""Where the autoscaler's durable state lives: the `LifecycleStore` protocol (instance records with
compare-and-set, offerings marked unavailable, recent decisions), kept in memory (tests, planner
scenarios) or in Redis (the monitor: the CAS is one Lua script).

Redis keys (prefix `rayctl:<cluster_id>:autoscaler:`): `instances` (hash id -> record JSON),
`status` (hash id -> status, what the CAS compares), `unavailable` (hash mark key -> JSON),
`decisions` (list of JSON, newest first, capped).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

from autoscaler.decisions import Decision
from autoscaler.lifecycle import (
    InstanceRecord,
    InstanceStatus,
    StaleRecord,
    from_json,
    legacy_name,
    parse_status,
    to_json,
)
from providers.base import Market, Offering
from runtime.gcs.schema import cluster_prefix

MAX_DECISIONS = 200


@dataclass(frozen=True, slots=True)
class OfferingMark:
    """An offering that failed with CapacityError (or was granted short, or throttled), or a
    whole node type whose quota ran out (`offering` None): skipped until `until`."""

    node_type: str
    offering: Offering | None  # None: every offering of the type
    until: float
    reason: str

    @property
    def whole_type(self) -> bool:
        return self.offering is None

    def covers(self, offering: Offering) -> bool:
        return self.offering is None or self.offering == offering


class LifecycleStore(Protocol):
    """Instance records, unavailable offerings and recent decisions. `put` is compare-and-set
    on the status the caller read, so two monitors (or a restarted one) never apply the same
    transition twice."""

    def get(self, instance_id: str) -> InstanceRecord | None: ...

    def all(self) -> list[InstanceRecord]:
        """Every record, by instance id."""
        ...

    def put(self, record: InstanceRecord, expected: InstanceStatus | None = None) -> None:
        """Store `record`. With `expected`, raise StaleRecord unless the stored record is in
        that status; with None, the id must be new."""
        ...

    def delete(self, instance_ids: Sequence[str]) -> None:
        """Forget records (old TERMINATED ones), so the store does not grow forever."""
        ...

    def mark_unavailable(self, mark: OfferingMark) -> None:
        """Replaces an earlier mark of the same offering (or whole type)."""
        ...

    def unavailable(self, now: float) -> list[OfferingMark]:
        """Marks still in force at `now`; expired ones are dropped on the way."""
        ...

    def add_decisions(self, decisions: Sequence[Decision]) -> None:
        """Keep the newest MAX_DECISIONS."""
        ...

    def decisions(self, limit: int = 20) -> list[Decision]:
        """Newest first."""
        ...


def _stale(instance_id: str, expected: InstanceStatus | None, found: str) -> StaleRecord:
    wanted = expected.value if expected is not None else "<absent>"
    return StaleRecord(f"instance {instance_id}: expected status {wanted}, found {found}")


def _mark_key(mark: OfferingMark) -> str:
    return f"{mark.node_type}|{mark.offering.key() if mark.offering else '*'}"


@dataclass
class InMemoryLifecycleStore:
    """The whole protocol in one process's memory; thread-safe (launch and install callbacks
    write from the executor's threads while the loop reads)."""

    records: dict[str, InstanceRecord] = field(default_factory=dict)
    marks: dict[str, OfferingMark] = field(default_factory=dict)
    recent: list[Decision] = field(default_factory=list)  # newest first
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def get(self, instance_id: str) -> InstanceRecord | None:
        with self._lock:
            return self.records.get(instance_id)

    def all(self) -> list[InstanceRecord]:
        with self._lock:
            return [self.records[k] for k in sorted(self.records)]

    def put(self, record: InstanceRecord, expected: InstanceStatus | None = None) -> None:
        with self._lock:
            current = self.records.get(record.instance_id)
            found = current.status if current is not None else None
            if found != expected:
                raise _stale(record.instance_id, expected, found.value if found else "<absent>")
            self.records[record.instance_id] = record

    def delete(self, instance_ids: Sequence[str]) -> None:
        with self._lock:
            for instance_id in instance_ids:
                self.records.pop(instance_id, None)

    def mark_unavailable(self, mark: OfferingMark) -> None:
        with self._lock:
            self.marks[_mark_key(mark)] = mark

    def unavailable(self, now: float) -> list[OfferingMark]:
        with self._lock:
            self.marks = {k: m for k, m in self.marks.items() if m.until > now}
            return [self.marks[k] for k in sorted(self.marks)]

    def add_decisions(self, decisions: Sequence[Decision]) -> None:
        with self._lock:
            self.recent = [*reversed(decisions), *self.recent][:MAX_DECISIONS]

    def decisions(self, limit: int = 20) -> list[Decision]:
        with self._lock:
            return self.recent[:limit]


# --- Redis ------------------------------------------------------------------------------------

# KEYS: instances, status. ARGV: id, expected status ("" = must be absent), new status, JSON,
# the expected status's legacy name ("" = none: a record an older rayctl wrote still matches).
# One script, so the check and both writes are atomic with respect to every other client.
_CAS_SCRIPT = """
local found = redis.call('HGET', KEYS[2], ARGV[1])
if not found then found = '' end
if found ~= ARGV[2] and (ARGV[5] == '' or found ~= ARGV[5]) then
  return found == '' and '<absent>' or found
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 'OK'
"""


def autoscaler_prefix(cluster_id: str) -> str:
    return cluster_prefix(cluster_id) + "autoscaler:"


class RedisLifecycleStore:
    """A LifecycleStore in Redis; safe to share between threads (redis-py pools connections)."""

    def __init__(self, client: redis.Redis, cluster_id: str) -> None:
        self.r = client
        self.prefix = autoscaler_prefix(cluster_id)
        self._cas = client.register_script(_CAS_SCRIPT)

    def key(self, name: str) -> str:
        return self.prefix + name

    def get(self, instance_id: str) -> InstanceRecord | None:
        raw = self.r.hget(self.key("instances"), instance_id)
        return from_json(raw) if raw is not None else None  # type: ignore[arg-type]

    def all(self) -> list[InstanceRecord]:
        raw: dict[Any, Any] = self.r.hgetall(self.key("instances"))  # type: ignore[assignment]
        records = [from_json(v) for v in raw.values()]
        return sorted(records, key=lambda r: r.instance_id)

    def put(self, record: InstanceRecord, expected: InstanceStatus | None = None) -> None:
        keys = [self.key("instances"), self.key("status")]
        wanted = expected.value if expected is not None else ""
        old = legacy_name(expected) if expected is not None else ""
        args = [record.instance_id, wanted, record.status.value, to_json(record), old]
        result = self._cas(keys=keys, args=args)
        text = result.decode() if isinstance(result, bytes) else str(result)
        if text != "OK":
            found = text if text == "<absent>" else _today(text)
            raise _stale(record.instance_id, expected, found)

    def delete(self, instance_ids: Sequence[str]) -> None:
        if instance_ids:
            self.r.hdel(self.key("instances"), *instance_ids)
            self.r.hdel(self.key("status"), *instance_ids)

    def mark_unavailable(self, mark: OfferingMark) -> None:
        offering = None
        if mark.offering is not None:
            o = mark.offering
            offering = {"instance_type": o.instance_type, "zone": o.zone, "market": o.market.value}
        value = {"node_type": mark.node_type, "offering": offering, "until": mark.until,
                 "reason": mark.reason}
        self.r.hset(self.key("unavailable"), _mark_key(mark), json.dumps(value))

    def unavailable(self, now: float) -> list[OfferingMark]:
        raw: dict[Any, Any] = self.r.hgetall(self.key("unavailable"))  # type: ignore[assignment]
        marks, expired = {}, []
        for key, value in raw.items():
            data = json.loads(value)
            # A mark without "offering" was written by an older version (its key spelled the
            # scope); marks live minutes at most, so it is dropped rather than parsed.
            if data["until"] <= now or "offering" not in data:
                expired.append(key)
                continue
            marks[key] = _mark_of(data)
        if expired:
            self.r.hdel(self.key("unavailable"), *expired)
        return [marks[k] for k in sorted(marks)]

    def add_decisions(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            return
        pipe = self.r.pipeline()
        pipe.lpush(self.key("decisions"), *[json.dumps(d.to_dict()) for d in decisions])
        pipe.ltrim(self.key("decisions"), 0, MAX_DECISIONS - 1)
        pipe.execute()

    def decisions(self, limit: int = 20) -> list[Decision]:
        key = self.key("decisions")
        raw: list[Any] = self.r.lrange(key, 0, limit - 1)  # type: ignore[assignment]
        return [Decision.from_dict(json.loads(v)) for v in raw]


def _today(name: str) -> str:
    """A status name as today's vocabulary spells it (the hash may hold a legacy name)."""
    try:
        return parse_status(name).value
    except ValueError:
        return name


def _mark_of(data: dict[str, Any]) -> OfferingMark:
    raw = data["offering"]
    offering = None
    if raw is not None:
        offering = Offering(raw["instance_type"], raw["zone"], Market(raw["market"]))
    return OfferingMark(data["node_type"], offering, float(data["until"]), data["reason"])

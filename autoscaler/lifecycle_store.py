"""The autoscaler's durable state in Redis: instance records (a `LifecycleStore` with
compare-and-set in one Lua script), offerings marked unavailable after a CapacityError, and the
recent decisions that `rayctl status` shows.

Keys (prefix `rayctl:<cluster_id>:autoscaler:`): `instances` (hash id -> record JSON), `status`
(hash id -> status, what the CAS compares), `unavailable` (hash offering key -> JSON),
`decisions` (list of JSON, newest first, capped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from autoscaler.lifecycle import InstanceRecord, InstanceStatus, StaleRecord, from_json, to_json

MAX_DECISIONS = 200

# KEYS: instances, status. ARGV: id, expected status ("" = must be absent), new status, JSON.
# One script, so the check and both writes are atomic with respect to every other client.
_CAS_SCRIPT = """
local found = redis.call('HGET', KEYS[2], ARGV[1])
if not found then found = '' end
if found ~= ARGV[2] then return found == '' and '<absent>' or found end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 'OK'
"""


def autoscaler_prefix(cluster_id: str) -> str:
    return f"rayctl:{cluster_id}:autoscaler:"


@dataclass(frozen=True, slots=True)
class OfferingMark:
    """An offering that failed with CapacityError (or a type whose quota ran out): skipped
    until `until`."""

    key: str  # Offering.key(), or "type:<node_type>" for a whole node type
    node_type: str
    until: float
    reason: str


class RedisLifecycleStore:
    """A LifecycleStore in Redis; safe to share between threads (redis-py pools connections)."""

    def __init__(self, client: redis.Redis, cluster_id: str) -> None:
        self.r = client
        self.prefix = autoscaler_prefix(cluster_id)
        self._cas = client.register_script(_CAS_SCRIPT)

    def key(self, name: str) -> str:
        return self.prefix + name

    # --- the LifecycleStore protocol ---------------------------------------------------------

    def get(self, instance_id: str) -> InstanceRecord | None:
        raw = self.r.hget(self.key("instances"), instance_id)
        return from_json(raw) if raw is not None else None  # type: ignore[arg-type]

    def all(self) -> list[InstanceRecord]:
        raw: dict[Any, Any] = self.r.hgetall(self.key("instances"))  # type: ignore[assignment]
        records = [from_json(v) for v in raw.values()]
        return sorted(records, key=lambda r: r.instance_id)

    def put(self, record: InstanceRecord, expected: InstanceStatus | None = None) -> None:
        keys = [self.key("instances"), self.key("status")]
        args = [record.instance_id, expected.value if expected else "", record.status.value]
        result = self._cas(keys=keys, args=[*args, to_json(record)])
        text = result.decode() if isinstance(result, bytes) else str(result)
        if text != "OK":
            wanted = expected.value if expected else "<absent>"
            raise StaleRecord(
                f"instance {record.instance_id}: expected status {wanted}, found {text}"
            )

    def delete(self, instance_ids: list[str]) -> None:
        """Forget records (old TERMINATED ones), so the hash does not grow forever."""
        if instance_ids:
            self.r.hdel(self.key("instances"), *instance_ids)
            self.r.hdel(self.key("status"), *instance_ids)

    # --- unavailable offerings ---------------------------------------------------------------

    def mark_unavailable(self, mark: OfferingMark) -> None:
        value = {"node_type": mark.node_type, "until": mark.until, "reason": mark.reason}
        self.r.hset(self.key("unavailable"), mark.key, json.dumps(value))

    def unavailable(self, now: float) -> list[OfferingMark]:
        """Marks still in force; expired ones are removed on the way."""
        raw: dict[Any, Any] = self.r.hgetall(self.key("unavailable"))  # type: ignore[assignment]
        marks, expired = [], []
        for key, value in raw.items():
            data = json.loads(value)
            name = key.decode() if isinstance(key, bytes) else key
            if data["until"] <= now:
                expired.append(name)
                continue
            marks.append(OfferingMark(name, data["node_type"], data["until"], data["reason"]))
        if expired:
            self.r.hdel(self.key("unavailable"), *expired)
        return sorted(marks, key=lambda m: m.key)

    # --- what `rayctl status` reads -------------------------------------------------------------

    def add_decisions(self, decisions: list[dict[str, Any]]) -> None:
        if not decisions:
            return
        pipe = self.r.pipeline()
        pipe.lpush(self.key("decisions"), *[json.dumps(d) for d in decisions])
        pipe.ltrim(self.key("decisions"), 0, MAX_DECISIONS - 1)
        pipe.execute()

    def decisions(self, limit: int = 20) -> list[dict[str, Any]]:
        raw: list[Any] = self.r.lrange(self.key("decisions"), 0, limit - 1)  # type: ignore[assignment]
        return [json.loads(v) for v in raw]

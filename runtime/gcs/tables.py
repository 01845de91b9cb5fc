"""The GCS's durable tables: every write goes to Redis (one key prefix per cluster) before the
in-memory copy answers reads, so a restarted GCS reloads all of it. The keys and record shapes
are runtime/gcs/schema.py's.

A change to a record already in memory goes through `edit`: the caller changes a draft, the draft
is written to Redis, and only then does the in-memory record (the same object every holder sees)
take its value. A write that fails (Redis down) leaves memory as Redis has it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import redis.asyncio as aioredis
from google.protobuf.message import Message

from runtime.gcs import schema
from runtime.gcs.schema import GcsKeys, JobRecord
from runtime.protocol import common_pb2

# a row of the node, actor or placement-group table
Record = TypeVar("Record", bound=Message)


class SchemaMismatchError(RuntimeError):
    """Redis holds this cluster's state in a layout this GCS does not read (one-line message)."""


class Tables:
    def __init__(self, client: aioredis.Redis, cluster_id: str) -> None:
        self.r = client
        self.cluster_id = cluster_id
        self.keys = GcsKeys(cluster_id)
        self.nodes: dict[str, common_pb2.NodeInfo] = {}
        self.actors: dict[str, common_pb2.ActorInfo] = {}
        self.named: dict[str, str] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.pgs: dict[str, common_pb2.PlacementGroupInfo] = {}
        # told of every change to a node's row (written here, or its resources moved by a placement
        # group in memory): the view sent to raylets
        self.on_node_changed: Callable[[str], None] = lambda _node_id: None

    async def check_schema(self) -> None:
        """Stamp a fresh cluster with the schema version; refuse state of another version."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.keys.schema_version)
        pipe.exists(*self.keys.tables())
        found, tables = await pipe.execute()
        problem = schema.schema_problem(found, bool(tables), self.cluster_id)
        if problem:
            raise SchemaMismatchError(problem)
        if found is None:
            await self.r.set(self.keys.schema_version, str(schema.SCHEMA_VERSION))

    async def load(self) -> None:
        """Reload every table from Redis (GCS start or restart), after checking its version."""
        await self.check_schema()
        k = self.keys
        for node_id, raw in (await self.r.hgetall(k.nodes)).items():
            self.nodes[_text(node_id)] = schema.decode_node(raw)
        for actor_id, raw in (await self.r.hgetall(k.actors)).items():
            self.actors[_text(actor_id)] = schema.decode_actor(raw)
        for pg_id, raw in (await self.r.hgetall(k.placement_groups)).items():
            self.pgs[_text(pg_id)] = schema.decode_placement_group(raw)
        named = await self.r.hgetall(k.named_actors)
        self.named = {_text(key): _text(v) for key, v in named.items()}
        self.jobs = {_text(key): schema.decode_job(v) for key, v in (await self.r.hgetall(k.jobs)).items()}

    @asynccontextmanager
    async def edit(self, record: Record) -> AsyncIterator[Record]:
        """`async with t.edit(actor) as draft: draft.state = ...`: the change reaches Redis before
        `record` (the in-memory row) shows it; if the write fails, `record` is unchanged."""
        draft = type(record)()
        draft.CopyFrom(record)
        yield draft
        if isinstance(draft, common_pb2.NodeInfo):
            await self.put_node(draft)
        elif isinstance(draft, common_pb2.ActorInfo):
            await self.put_actor(draft)
        elif isinstance(draft, common_pb2.PlacementGroupInfo):
            await self.put_pg(draft)
        else:
            raise TypeError(f"no table holds {type(draft).__name__}")
        record.CopyFrom(draft)
        self._remember(record)

    def _remember(self, record: Record) -> None:
        if isinstance(record, common_pb2.NodeInfo):
            self.nodes[record.node_id] = record
        elif isinstance(record, common_pb2.ActorInfo):
            self.actors[record.actor_id] = record
        elif isinstance(record, common_pb2.PlacementGroupInfo):
            self.pgs[record.pg_id] = record

    async def put_node(self, info: common_pb2.NodeInfo) -> None:
        await self.r.hset(self.keys.nodes, info.node_id, schema.encode_record(info))
        self.nodes[info.node_id] = info
        self.on_node_changed(info.node_id)

    async def put_actor(self, actor: common_pb2.ActorInfo) -> None:
        actor.version += 1
        await self.r.hset(self.keys.actors, actor.actor_id, schema.encode_record(actor))
        self.actors[actor.actor_id] = actor

    async def put_pg(self, pg: common_pb2.PlacementGroupInfo) -> None:
        pg.version += 1
        await self.r.hset(self.keys.placement_groups, pg.pg_id, schema.encode_record(pg))
        self.pgs[pg.pg_id] = pg

    async def drop_pgs(self, pg_ids: list[str]) -> None:
        if pg_ids:
            await self.r.hdel(self.keys.placement_groups, *pg_ids)
        for pg_id in pg_ids:
            self.pgs.pop(pg_id, None)

    async def put_name(self, namespace: str, name: str, actor_id: str | None) -> None:
        key = f"{namespace}/{name}"
        if actor_id is None:
            await self.r.hdel(self.keys.named_actors, key)
            self.named.pop(key, None)
        else:
            await self.r.hset(self.keys.named_actors, key, actor_id)
            self.named[key] = actor_id

    async def put_job(self, job_id: str, job: JobRecord) -> None:
        await self.r.hset(self.keys.jobs, job_id, schema.encode_job(job))
        self.jobs[job_id] = job

    async def put_nodes_and_loads(self, nodes: list[common_pb2.NodeInfo], loads: dict[str, str]) -> None:
        """Reports' writes in one round trip: the rows of `nodes` (already in memory) and the
        loads (node id -> schema.encode_load)."""
        if not nodes and not loads:
            return
        pipe = self.r.pipeline(transaction=False)
        if nodes:
            pipe.hset(self.keys.nodes, mapping={n.node_id: schema.encode_record(n) for n in nodes})
        if loads:
            pipe.hset(self.keys.load, mapping=loads)  # type: ignore[arg-type]
        await pipe.execute()

    async def drop_load(self, node_id: str) -> None:
        await self.r.hdel(self.keys.load, node_id)

    async def publish_node(self, info: common_pb2.NodeInfo) -> None:
        """Node added / draining / dead, for anyone subscribed to `node_changes`."""
        await self.r.publish(self.keys.node_changes, schema.encode_node_change(info))

    async def notify_demand_changed(self) -> None:
        await self.r.publish(self.keys.demand_changed, str(time.time()))

    async def event(self, kind: str, message: str) -> None:
        fields = schema.event_fields(kind, message, time.time())
        await self.r.xadd(self.keys.events, fields, maxlen=schema.EVENTS_MAX,  # type: ignore[arg-type]
                          approximate=True)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

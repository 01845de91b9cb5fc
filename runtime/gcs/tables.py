"""The GCS's durable tables: every write goes to Redis (one key prefix per cluster) before the
in-memory copy answers reads, so a restarted GCS reloads all of it.

Keys (prefix = "rayctl:<cluster_id>:"):
  nodes            hash node_id  -> NodeInfo (protobuf bytes)
  actors           hash actor_id -> ActorInfo (protobuf bytes)
  placement_groups hash pg_id    -> PlacementGroupInfo (protobuf bytes); PENDING ones are demand;
                   the last 1,000 REMOVED ones are kept
  named_actors     hash "<namespace>/<name>" -> actor_id
  jobs             hash job_id   -> JSON {driver_address, driver_pid, namespace, start, end}
  kv:<ns>          hash key      -> value (internal KV)
  load             hash node_id  -> JSON [{shape, count, infeasible, kind}]  (the demand)
  demand_changed   pub/sub channel: a debounced notice when any node's load changes
  node_changes     pub/sub channel: JSON {node_id, state, reason} when a node joins, drains or dies
  events           stream of {kind, message, time}
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis

from runtime.protocol import common_pb2
from runtime.protocol.states import NodeState


class Tables:
    def __init__(self, client: aioredis.Redis, cluster_id: str) -> None:
        self.r = client
        self.prefix = f"rayctl:{cluster_id}:"
        self.nodes: dict[str, common_pb2.NodeInfo] = {}
        self.actors: dict[str, common_pb2.ActorInfo] = {}
        self.named: dict[str, str] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pgs: dict[str, common_pb2.PlacementGroupInfo] = {}

    def key(self, name: str) -> str:
        return self.prefix + name

    async def load(self) -> None:
        """Reload every table from Redis (GCS start or restart)."""
        for node_id, raw in (await self.r.hgetall(self.key("nodes"))).items():
            info = common_pb2.NodeInfo()
            info.ParseFromString(raw)
            self.nodes[_text(node_id)] = info
        for actor_id, raw in (await self.r.hgetall(self.key("actors"))).items():
            actor = common_pb2.ActorInfo()
            actor.ParseFromString(raw)
            self.actors[_text(actor_id)] = actor
        for pg_id, raw in (await self.r.hgetall(self.key("placement_groups"))).items():
            pg = common_pb2.PlacementGroupInfo()
            pg.ParseFromString(raw)
            self.pgs[_text(pg_id)] = pg
        named = await self.r.hgetall(self.key("named_actors"))
        self.named = {_text(k): _text(v) for k, v in named.items()}
        self.jobs = {
            _text(k): json.loads(v) for k, v in (await self.r.hgetall(self.key("jobs"))).items()
        }

    async def put_node(self, info: common_pb2.NodeInfo) -> None:
        await self.r.hset(self.key("nodes"), info.node_id, info.SerializeToString())
        self.nodes[info.node_id] = info

    async def put_actor(self, actor: common_pb2.ActorInfo) -> None:
        actor.version += 1
        await self.r.hset(self.key("actors"), actor.actor_id, actor.SerializeToString())
        self.actors[actor.actor_id] = actor

    async def put_pg(self, pg: common_pb2.PlacementGroupInfo) -> None:
        pg.version += 1
        await self.r.hset(self.key("placement_groups"), pg.pg_id, pg.SerializeToString())
        self.pgs[pg.pg_id] = pg

    async def drop_pgs(self, pg_ids: list[str]) -> None:
        if pg_ids:
            await self.r.hdel(self.key("placement_groups"), *pg_ids)
        for pg_id in pg_ids:
            self.pgs.pop(pg_id, None)

    async def put_name(self, namespace: str, name: str, actor_id: str | None) -> None:
        key = f"{namespace}/{name}"
        if actor_id is None:
            await self.r.hdel(self.key("named_actors"), key)
            self.named.pop(key, None)
        else:
            await self.r.hset(self.key("named_actors"), key, actor_id)
            self.named[key] = actor_id

    async def put_job(self, job_id: str, job: dict[str, Any]) -> None:
        await self.r.hset(self.key("jobs"), job_id, json.dumps(job))
        self.jobs[job_id] = job

    async def put_load(self, node_id: str, load: list[dict[str, Any]]) -> None:
        await self.r.hset(self.key("load"), node_id, json.dumps(load))

    async def put_node_and_load(self, info: common_pb2.NodeInfo, load: list[dict[str, Any]] | None) -> None:
        """A heartbeat's writes in one round trip: the node's resources and, if given, its load."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self.key("nodes"), info.node_id, info.SerializeToString())
        if load is not None:
            pipe.hset(self.key("load"), info.node_id, json.dumps(load))
        await pipe.execute()
        self.nodes[info.node_id] = info

    async def drop_load(self, node_id: str) -> None:
        await self.r.hdel(self.key("load"), node_id)

    async def publish_node(self, info: common_pb2.NodeInfo) -> None:
        """Node added / draining / dead, for anyone subscribed to `node_changes`."""
        message = json.dumps({"node_id": info.node_id, "state": NodeState.from_wire(info.state).value, "reason": info.death_reason})
        await self.r.publish(self.key("node_changes"), message)

    async def notify_demand_changed(self) -> None:
        await self.r.publish(self.key("demand_changed"), str(time.time()))

    async def event(self, kind: str, message: str) -> None:
        await self.r.xadd(
            self.key("events"),
            {"kind": kind, "message": message, "time": str(time.time())},
            maxlen=10000,
            approximate=True,
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

"""The autoscaler loop: observe -> plan -> reconcile, woken at once by the GCS's
`demand_changed` notice (and by writes to the `kv:autoscaler` hash, where request_resources()
lands), with a periodic tick as fallback. All state lives in Redis, so a restarted monitor
resumes where the last one stopped.

    python -m autoscaler.monitor --config FILE --gcs-address HOST:PORT --token-file F \
        --redis-address HOST:PORT --cluster-id ID
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from autoscaler import planner
from autoscaler.config import ClusterConfig, load_config, open_provider
from autoscaler.drain import AcceptingDrainer, GcsDrainer, NodeDrainer
from autoscaler.executor import ConfigNodeUpdater, Executor
from autoscaler.lifecycle_store import RedisLifecycleStore
from autoscaler.model import Plan
from autoscaler.observe import (
    GcsNode,
    NodeSource,
    Observation,
    build_snapshot,
    node_from_proto,
    read_gcs,
    redis_nodes,
    scaling_config,
)
from autoscaler.reconciler import Reconciler, Settings
from autoscaler.status import compose
from providers.base import NodeProvider
from runtime.gcs import schema
from runtime.gcs.schema import GcsKeys, KvKey, KvNamespace

log = structlog.get_logger(__name__)

DEFAULT_TICK_S = 1.0  # fallback only: idle timeouts are the one thing no notice announces


DEFAULT_UPDATE_LOG_DIR = os.path.join(tempfile.gettempdir(), "rayctl-node-updates")


@dataclass(frozen=True, slots=True)
class MonitorOptions:
    cluster_id: str
    gcs_address: str = ""
    token_file: str = ""
    tick_s: float = DEFAULT_TICK_S
    max_concurrent_launches: int = 10
    settings: Settings = Settings()
    log_dir: str = DEFAULT_UPDATE_LOG_DIR  # one update log per node


class Monitor:
    def __init__(
        self,
        config: ClusterConfig,
        provider: NodeProvider,
        client: redis.Redis,
        options: MonitorOptions,
        *,
        nodes: NodeSource | None = None,
        drainer: NodeDrainer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.provider = provider
        self.r = client
        self.options = options
        self.clock = clock
        self.nodes = nodes or redis_nodes(client, options.cluster_id)
        self.scaling = scaling_config(config, provider)
        self.offerings = {
            name: tuple(o.key() for o in provider.offerings(name))
            for name in config.available_node_types
        }
        self.store = RedisLifecycleStore(client, options.cluster_id)
        updater = ConfigNodeUpdater(
            provider,
            config,
            options.gcs_address,
            options.token_file,
            options.log_dir,
            {name: dict(spec.resources) for name, spec in self.scaling.node_types.items()},
        )
        self.executor = Executor(
            provider, updater, drainer or AcceptingDrainer(), options.max_concurrent_launches
        )
        self.reconciler = Reconciler(
            self.store, provider, self.executor, self.scaling, clock, options.settings
        )
        self.rounds = 0
        self.last_wake = 0.0  # time.monotonic() when the latest round began
        self.woke = threading.Event()  # set at the start of every round (tests wait on it)
        self.last_plan = Plan()
        self._infeasible_reported: set[str] = set()

    # --- one round -------------------------------------------------------------------------

    def observe(self) -> Observation:
        return Observation(
            gcs=read_gcs(self.r, self.options.cluster_id, self.nodes),
            instances=tuple(self.provider.list_instances()),
            records=tuple(self.store.all()),
            marks=tuple(self.store.unavailable(self.clock())),
            offerings=self.offerings,
        )

    def run_once(self) -> Plan:
        self.rounds += 1
        self.last_wake = time.monotonic()
        self.woke.set()
        obs = self.observe()
        self.reconciler.sync(obs)
        obs = Observation(obs.gcs, obs.instances, tuple(self.store.all()), obs.marks, obs.offerings)
        now = self.clock()
        plan = planner.plan(build_snapshot(obs, self.config.head_node_type, now), self.scaling, now)
        self.reconciler.step(plan, obs)
        self._record(plan, obs, now)
        self.last_plan = plan
        return plan

    def publish_launchable(self) -> None:
        """What the runtime's infeasible warning may count on being launched."""
        launchable = {
            name: dict(spec.resources)
            for name, spec in self.scaling.node_types.items()
            if spec.max_workers > 0
        }
        self.r.hset(
            GcsKeys(self.options.cluster_id).kv(KvNamespace.AUTOSCALER),
            KvKey.LAUNCHABLE_NODE_TYPES,
            schema.encode_launchable(launchable),
        )

    def _record(self, plan: Plan, obs: Observation, now: float) -> None:
        """Decisions (new infeasible shapes included, once) and the status `rayctl status`
        reads, in the GCS KV so that clients read it through the GCS."""
        decisions = [d.to_dict() for d in self.reconciler.take_decisions()]
        infeasible = {str(i.shape): i for i in plan.infeasible}
        decisions += [
            {"at": now, "action": "infeasible", "target": key, "node_type": "", "reason": i.reason}
            for key, i in sorted(infeasible.items())
            if key not in self._infeasible_reported
        ]
        self._infeasible_reported = set(infeasible)
        self.store.add_decisions(decisions)
        marks = self.store.unavailable(now)
        status = compose(obs.gcs, self.store.all(), plan, self.store.decisions(20), marks, now)
        key = GcsKeys(self.options.cluster_id).kv(KvNamespace.AUTOSCALER_STATUS)
        self.r.hset(key, KvKey.STATUS, status.to_json())

    # --- the loop ----------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        pubsub: Any = None
        try:
            while not stop.is_set():
                try:
                    self.run_once()
                except Exception:  # one bad round (Redis hiccup, provider bug) must not end it
                    log.exception("autoscaler round failed; retrying next tick")
                pubsub = self._wait(pubsub, stop)
        finally:
            if pubsub is not None:
                pubsub.close()
            self.executor.shutdown()

    def _wait(self, pubsub: Any, stop: threading.Event) -> Any:
        """Until a notice arrives, the tick passes, or stop is set (checked every 100 ms).
        Returns the subscription, or None when Redis is unreachable (retried next time)."""
        try:
            if pubsub is None:
                pubsub = self._subscribe()
            deadline = time.monotonic() + self.options.tick_s
            while not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if pubsub.get_message(timeout=min(left, 0.1)) is not None:
                    while pubsub.get_message(timeout=0) is not None:
                        pass  # several notices, one round
                    break
            return pubsub
        except redis.RedisError as exc:  # Redis restarting: rounds go on at the tick
            log.warning("no demand-change subscription", error=str(exc))
            if pubsub is not None:
                pubsub.close()
            stop.wait(self.options.tick_s)
            return None

    def _subscribe(self) -> Any:
        keys = GcsKeys(self.options.cluster_id)
        pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        channels = [keys.demand_changed]
        if _enable_keyspace_events(self.r):
            channels.append(f"__keyspace@0__:{keys.kv(KvNamespace.AUTOSCALER)}")
        pubsub.subscribe(*channels)
        self.publish_launchable()  # again after a Redis restart, in case it lost the key
        return pubsub


def _enable_keyspace_events(client: redis.Redis) -> bool:
    """request_resources() writes through the GCS KV, which publishes nothing; Redis keyspace
    notices on hashes wake us instead (K = keyspace channel, h = hash commands)."""
    try:
        current = client.config_get("notify-keyspace-events").get("notify-keyspace-events")
        if isinstance(current, bytes):
            current = current.decode()
        flags = set(current or "") | {"K", "h"}
        client.config_set("notify-keyspace-events", "".join(sorted(flags)))
        return True
    except redis.ResponseError as exc:
        log.warning("no keyspace notices; request_resources waits for the tick", error=str(exc))
        return False


# --- the process -------------------------------------------------------------------------------


def gcs_nodes(gcs_address: str, token: str) -> NodeSource:
    """Live node rows from the GCS (heartbeat fields included), Redis as fallback."""
    import grpc

    from runtime.auth import call_metadata
    from runtime.protocol import gcs_pb2, gcs_pb2_grpc

    channel = grpc.insecure_channel(gcs_address)
    stub = gcs_pb2_grpc.GcsStub(channel)

    def read() -> list[GcsNode]:
        reply = stub.GetNodes(gcs_pb2.Empty(), metadata=call_metadata(token), timeout=5)
        return [node_from_proto(n) for n in reply.nodes]

    return read


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="rayctl autoscaler monitor")
    p.add_argument("--config", required=True, help="cluster YAML")
    p.add_argument("--gcs-address", required=True, help="HOST:PORT of the GCS")
    p.add_argument("--token-file", required=True, help="cluster token (also the Redis password)")
    p.add_argument("--redis-address", required=True, help="HOST:PORT of the GCS's Redis")
    p.add_argument("--cluster-id", required=True)
    p.add_argument("--tick-s", type=float, default=DEFAULT_TICK_S)
    p.add_argument("--max-concurrent-launches", type=int, default=10)
    p.add_argument("--log-dir", default=DEFAULT_UPDATE_LOG_DIR, help="per-node update logs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from runtime.auth import read_token_file

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = load_config(args.config)
    token = read_token_file(args.token_file)
    host, _, port = args.redis_address.rpartition(":")
    client = redis.Redis(host=host, port=int(port), password=token)
    options = MonitorOptions(
        cluster_id=args.cluster_id,
        gcs_address=args.gcs_address,
        token_file=args.token_file,
        tick_s=args.tick_s,
        max_concurrent_launches=args.max_concurrent_launches,
        log_dir=args.log_dir,
    )
    monitor = Monitor(
        config,
        open_provider(config),
        client,
        options,
        nodes=gcs_nodes(args.gcs_address, token),
        drainer=GcsDrainer(args.gcs_address, token),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("autoscaler monitor started", cluster=config.cluster_name, cluster_id=args.cluster_id)
    monitor.run_forever(stop)


if __name__ == "__main__":
    main()

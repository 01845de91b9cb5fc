"""The head's autoscaler process: rounds of `scaler.Autoscaler` (observe -> plan -> reconcile),
woken at once by the GCS's `demand_changed` notice (and by writes to the `kv:autoscaler` hash,
where request_resources() lands), with a periodic tick as fallback. All state lives in Redis,
so a restarted monitor resumes where the last one stopped.

    python -m autoscaler.monitor --config FILE --gcs-address HOST:PORT --token-file F \
        --redis-address HOST:PORT --cluster-id ID [--drain-timeout-s 600]
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
import structlog

from autoscaler.config import ClusterConfig, load_config, open_provider
from autoscaler.drain import AcceptingDrainer, GcsDrainer, NodeDrainer
from autoscaler.executor import Executor
from autoscaler.installer import ConfigNodeInstaller
from autoscaler.lifecycle import Timeouts
from autoscaler.lifecycle_store import LifecycleStore, RedisLifecycleStore
from autoscaler.model import Plan, ScalingConfig
from autoscaler.observe import (
    GcsNode,
    NodeSource,
    node_from_proto,
    read_gcs,
    redis_nodes,
    scaling_config,
)
from autoscaler.reconciler import Reconciler
from autoscaler.scaler import Autoscaler, RoundResult
from autoscaler.settings import Settings
from autoscaler.status import compose
from providers.base import NodeProvider
from runtime.gcs import schema
from runtime.gcs.schema import GcsKeys, KvKey, KvNamespace
from runtime.log_rotation import rotate_own_output

if TYPE_CHECKING:
    from runtime.tls import ClusterTls

log = structlog.get_logger(__name__)

DEFAULT_TICK_S = 1.0  # fallback only: idle timeouts are the one thing no notice announces
POLL_S = 0.05  # between two looks for a finished background job while waiting for a notice


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


def build_executor(
    config: ClusterConfig,
    provider: NodeProvider,
    scaling: ScalingConfig,
    options: MonitorOptions,
    drainer: NodeDrainer | None = None,
    on_job_done: Callable[[], None] | None = None,
) -> Executor:
    """The executor a monitor runs: the full node install (file mounts, setup, start commands)
    for every worker, drains through `drainer`."""
    installer = ConfigNodeInstaller(
        provider,
        config,
        options.gcs_address,
        options.token_file,
        options.log_dir,
        {name: dict(spec.resources) for name, spec in scaling.node_types.items()},
    )
    return Executor(
        provider,
        installer,
        drainer or AcceptingDrainer(),
        options.max_concurrent_launches,
        on_job_done=on_job_done,
    )


class Monitor:
    """The head's autoscaler process: rounds of `Autoscaler` on the Redis store and the GCS's
    tables, woken by the GCS's notices, with the status `rayctl status` reads written after
    each."""

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
        store: LifecycleStore | None = None,
    ) -> None:
        self.config = config
        self.provider = provider
        self.r = client
        self.options = options
        self.clock = clock
        self.nodes = nodes or redis_nodes(client, options.cluster_id)
        self.scaling = scaling_config(config, provider)
        self.store = store or RedisLifecycleStore(client, options.cluster_id)
        self.job_done = threading.Event()  # a background job finished: worth a round now
        self.executor = build_executor(
            config, provider, self.scaling, options, drainer, self.job_done.set
        )
        self.autoscaler = Autoscaler(
            config, self.scaling, provider, self.store, self.executor,
            functools.partial(read_gcs, client, options.cluster_id, self.nodes),
            clock=clock, settings=options.settings,
        )
        self.rounds = 0
        self.last_wake = 0.0  # time.monotonic() when the latest round began
        self.woke = threading.Event()  # set at the start of every round (tests wait on it)

    @property
    def reconciler(self) -> Reconciler:
        return self.autoscaler.reconciler

    @property
    def last_plan(self) -> Plan:
        return self.autoscaler.last_plan

    # --- one round -------------------------------------------------------------------------

    def run_once(self) -> Plan:
        self.rounds += 1
        self.last_wake = time.monotonic()
        self.woke.set()
        result = self.autoscaler.run_once()
        self._write_status(result)
        return result.plan

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

    def _write_status(self, result: RoundResult) -> None:
        """The status `rayctl status` reads, in the GCS KV so that clients read it through the
        GCS."""
        now = result.at
        status = compose(
            result.observation.gcs,
            self.store.all(),
            result.plan,
            self.store.decisions(20),
            self.store.unavailable(now),
            now,
        )
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
        """Until a notice arrives, a background job finishes, the tick passes, or stop is set
        (the last two checked every POLL_S). Returns the subscription, or None when Redis is
        unreachable (retried next time)."""
        try:
            if pubsub is None:
                pubsub = self._subscribe()
            deadline = time.monotonic() + self.options.tick_s
            while not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or self.job_done.is_set():
                    self.job_done.clear()
                    break
                if pubsub.get_message(timeout=min(left, POLL_S)) is not None:
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


def gcs_nodes(gcs_address: str, token: str, tls: ClusterTls | None = None) -> NodeSource:
    """Live node rows from the GCS (heartbeat fields included), Redis as fallback."""

    from runtime.grpc_auth import open_channel
    from runtime.protocol import gcs_pb2, gcs_pb2_grpc

    channel = open_channel(gcs_address, token, tls=tls)
    stub = gcs_pb2_grpc.GcsStub(channel)

    def read() -> list[GcsNode]:
        reply = stub.GetNodes(gcs_pb2.Empty(), timeout=5)
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
    p.add_argument(
        "--drain-timeout-s",
        type=float,
        default=Timeouts().drain_s,
        help="a draining node is terminated after this long even if work still holds it",
    )
    args = p.parse_args(argv)
    if not args.drain_timeout_s > 0:
        p.error(f"--drain-timeout-s must be a number of seconds > 0, got {args.drain_timeout_s:g}")
    return args


def options_from_args(args: argparse.Namespace) -> MonitorOptions:
    return MonitorOptions(
        cluster_id=args.cluster_id,
        gcs_address=args.gcs_address,
        token_file=args.token_file,
        tick_s=args.tick_s,
        max_concurrent_launches=args.max_concurrent_launches,
        settings=Settings(timeouts=Timeouts(drain_s=args.drain_timeout_s)),
        log_dir=args.log_dir,
    )


def main(argv: list[str] | None = None) -> None:
    from runtime.auth import read_credentials

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    rotate_own_output()
    config = load_config(args.config)
    credentials = read_credentials(args.token_file)
    token = credentials.token
    host, _, port = args.redis_address.rpartition(":")
    client = redis.Redis(host=host, port=int(port), password=token)
    monitor = Monitor(
        config,
        open_provider(config),
        client,
        options_from_args(args),
        nodes=gcs_nodes(args.gcs_address, token, credentials.tls),
        drainer=GcsDrainer(args.gcs_address, token, credentials.tls),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("autoscaler monitor started", cluster=config.cluster_name, cluster_id=args.cluster_id)
    monitor.run_forever(stop)


if __name__ == "__main__":
    main()

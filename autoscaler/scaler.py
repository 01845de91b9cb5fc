"""One autoscaler round — observe -> plan -> reconcile -> record decisions — on whatever store,
provider and GCS view it is given. monitor.py runs it in the head's monitor process (Redis
store, GCS tables, woken by the GCS); tests run it on an in-memory store and a simulated GCS."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from autoscaler import planner
from autoscaler.config import ClusterConfig
from autoscaler.decisions import Decision, DecisionAction, FailureCause
from autoscaler.executor import Executor
from autoscaler.lifecycle_store import LifecycleStore
from autoscaler.model import Plan, ScalingConfig
from autoscaler.observe import GcsView, Observation, build_snapshot
from autoscaler.reconciler import Reconciler
from autoscaler.settings import Settings
from providers.base import NodeProvider, Offering


@dataclass(frozen=True, slots=True)
class RoundResult:
    at: float
    plan: Plan
    observation: Observation  # as the planner saw it (after sync)


class Autoscaler:
    def __init__(
        self,
        config: ClusterConfig,
        scaling: ScalingConfig,
        provider: NodeProvider,
        store: LifecycleStore,
        executor: Executor,
        read_gcs: Callable[[], GcsView],
        *,
        clock: Callable[[], float],
        settings: Settings | None = None,
    ) -> None:
        self.config = config
        self.scaling = scaling
        self.provider = provider
        self.store = store
        self.executor = executor
        self.read_gcs = read_gcs
        self.clock = clock
        self.offerings: dict[str, tuple[Offering, ...]] = {
            name: tuple(provider.offerings(name)) for name in config.available_node_types
        }
        self.reconciler = Reconciler(store, provider, executor, scaling, clock, settings)
        self.last_plan = Plan()
        self._infeasible_reported: set[str] = set()

    def observe(self) -> Observation:
        return Observation(
            gcs=self.read_gcs(),
            instances=tuple(self.provider.list_instances()),
            records=tuple(self.store.all()),
            marks=tuple(self.store.unavailable(self.clock())),
            offerings=self.offerings,
        )

    def run_once(self) -> RoundResult:
        obs = self.observe()
        self.reconciler.sync(obs)
        obs = replace(obs, records=tuple(self.store.all()))
        now = self.clock()
        snapshot = build_snapshot(obs, self.config.head_node_type, now)
        plan = planner.plan(snapshot, self.scaling, now)
        self.reconciler.step(plan, obs)
        self.store.add_decisions(self.reconciler.take_decisions() + self._infeasible(plan, now))
        self.last_plan = plan
        return RoundResult(now, plan, obs)

    def _infeasible(self, plan: Plan, now: float) -> list[Decision]:
        """Shapes no node type can hold: one decision when a shape first shows up."""
        infeasible = {str(i.shape): i for i in plan.infeasible}
        new = [
            Decision(now, DecisionAction.INFEASIBLE, FailureCause.NO_FITTING_TYPE, key, "",
                     i.reason)
            for key, i in sorted(infeasible.items())
            if key not in self._infeasible_reported
        ]
        self._infeasible_reported = set(infeasible)
        return new

"""The one offering-failover loop, for `rayctl up`'s head and the autoscaler's batches and gangs:
try a node type's offerings in order under one request id; CapacityError -> the next offering
(the caller remembers the failed one for a while); any other ProviderError stops the request.
A gang launches its requests one after another, all or nothing each, and terminates what the
earlier ones launched when a later one fails."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from providers.base import CapacityError, Instance, NodeProvider, Offering, ProviderError

log = structlog.get_logger(__name__)

# Called with (node_type, offering, reason) as soon as an offering has no capacity, before the
# next one is tried: a caller that saves it then, not when the request returns, never retries
# that offering after a crash in between.
CapacityFailureHook = Callable[[str, Offering, str], None]


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """`count` instances of one node type in one provider call (one RunInstances, one
    bulkInsert). The request id makes a resend after a crash return what the first call made."""

    node_type: str
    count: int
    request_id: str
    offerings: tuple[Offering, ...]  # in order of preference
    tags: Mapping[str, str] = field(default_factory=dict)
    all_or_nothing: bool = False


@dataclass(frozen=True, slots=True)
class LaunchOutcome:
    request: LaunchRequest
    instances: tuple[Instance, ...] = ()
    capacity_failures: tuple[tuple[Offering, str], ...] = ()  # offerings that had no capacity
    error: ProviderError | None = None  # the non-capacity error that stopped the request
    failed_offering: Offering | None = None  # the offering `error` came from
    granted_by: Offering | None = None  # the offering that gave `instances`

    @property
    def complete(self) -> bool:
        return len(self.instances) >= self.request.count

    def why_short(self) -> str:
        """What the provider said, for a record that got no instance."""
        reasons = [reason for _, reason in self.capacity_failures]
        if self.error is not None:
            reasons.append(str(self.error))
        if self.instances:
            reasons.append(f"the cloud granted {len(self.instances)} of {self.request.count}")
        return "; ".join(reasons) or "the provider launched nothing"


def launch_with_failover(
    provider: NodeProvider, request: LaunchRequest, on_capacity: CapacityFailureHook | None = None
) -> LaunchOutcome:
    """One request, trying its offerings in order. Never raises a ProviderError: the outcome
    says what happened, so the caller decides what to remember (`on_capacity` hears each
    capacity failure at once)."""
    failures: list[tuple[Offering, str]] = []
    for offering in request.offerings:
        try:
            launched = provider.launch(
                request.node_type,
                offering,
                request.count,
                request.request_id,
                tags=request.tags,
                all_or_nothing=request.all_or_nothing,
            )
        except CapacityError as exc:
            failures.append((exc.offering, str(exc)))
            if on_capacity is not None:
                on_capacity(request.node_type, exc.offering, str(exc))
            continue
        except ProviderError as exc:
            # quota, auth, config or throttling: another offering will not help now
            return LaunchOutcome(request, (), tuple(failures), exc, offering)
        if launched:
            return LaunchOutcome(request, tuple(launched), tuple(failures), granted_by=offering)
        failures.append((offering, f"{offering.key()} launched nothing"))
        if on_capacity is not None:
            on_capacity(request.node_type, offering, failures[-1][1])
    return LaunchOutcome(request, (), tuple(failures))


@dataclass(frozen=True, slots=True)
class GangOutcome:
    """Requests launched in order. `outcomes` stops at the first all-or-nothing request that
    came back short; what the earlier ones launched is in `rolled_back` (terminate sent)."""

    outcomes: tuple[LaunchOutcome, ...]
    not_attempted: tuple[LaunchRequest, ...] = ()
    rolled_back: tuple[Instance, ...] = ()
    rollback_error: ProviderError | None = None  # the terminate of `rolled_back` raised

    @property
    def failed(self) -> bool:
        return bool(self.rolled_back or self.not_attempted) or any(
            o.request.all_or_nothing and not o.complete for o in self.outcomes
        )


def launch_gang(
    provider: NodeProvider,
    requests: Sequence[LaunchRequest],
    on_capacity: CapacityFailureHook | None = None,
) -> GangOutcome:
    """Launch `requests` one after another (a lone batch is a gang of one). When an
    all-or-nothing request comes back short, stop, and terminate what the earlier requests
    launched: a placement group's nodes are useless in part."""
    outcomes: list[LaunchOutcome] = []
    for i, request in enumerate(requests):
        outcome = launch_with_failover(provider, request, on_capacity)
        outcomes.append(outcome)
        if request.all_or_nothing and not outcome.complete:
            # (the short one's own instances too, should a provider break its contract)
            launched = [inst for o in outcomes for inst in o.instances]
            error = _terminate(provider, [inst.id for inst in launched])
            return GangOutcome(tuple(outcomes), tuple(requests[i + 1 :]), tuple(launched), error)
    return GangOutcome(tuple(outcomes))


def _terminate(provider: NodeProvider, ids: list[str]) -> ProviderError | None:
    if not ids:
        return None
    try:
        provider.terminate(ids)
    except ProviderError as exc:
        log.warning("gang rollback: terminate failed", instances=ids, error=str(exc))
        return exc
    return None

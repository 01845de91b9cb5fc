"""The reconciler's tunables: lifecycle timeouts, grace periods, and how long a failed offering
is left alone."""

from __future__ import annotations

from dataclasses import dataclass, field

from autoscaler.lifecycle import Timeouts


@dataclass(frozen=True, slots=True)
class Settings:
    timeouts: Timeouts = field(default_factory=Timeouts)
    leak_grace_s: float = 300.0  # an unknown instance younger than this may be a launch in flight
    capacity_backoff_s: float = 300.0  # how long a CapacityError keeps an offering unused
    quota_backoff_s: float = 600.0
    terminate_resend_s: float = 30.0
    keep_terminated_s: float = 3600.0  # history kept for `rayctl status -v`
    transient_backoff_s: float = 30.0  # throttling / 5xx: leave that offering alone a while
    # An install a previous monitor ran to the end (its start commands returned) before dying:
    # its raylet gets this long to register after a restart, then the machine is replaced. One
    # whose commands never returned is given up at once (reconciler._orphaned_install).
    orphan_install_grace_s: float = 60.0

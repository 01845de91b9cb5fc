"""In-memory node provider for planner scenarios and scale tests: no processes, knobs for
capacity, launch delay, quota and the next error, and a record of every call."""

from providers.fake.clock import Clock, FakeClock, system_clock
from providers.fake.provider import (
    FakeCommandRunner,
    FakeNodeConfig,
    FakeProvider,
    FakeProviderConfig,
)

__all__ = [
    "Clock",
    "FakeClock",
    "FakeCommandRunner",
    "FakeNodeConfig",
    "FakeProvider",
    "FakeProviderConfig",
    "system_clock",
]

"""Node slots on this machine: the embedded default provider (see `provider.py`)."""

from providers.local.provider import (
    LocalNodeConfig,
    LocalProvider,
    LocalProviderConfig,
    state_root,
)
from providers.local.runner import LocalCommandRunner

__all__ = [
    "LocalCommandRunner",
    "LocalNodeConfig",
    "LocalProvider",
    "LocalProviderConfig",
    "state_root",
]

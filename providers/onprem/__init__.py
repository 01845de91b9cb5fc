"""Static SSH hosts as cluster nodes (`provider: {type: onprem, head_ip, worker_ips}`)."""

from providers.onprem.config import OnPremNodeConfig, OnPremProviderConfig, free_hosts
from providers.onprem.provider import ONPREM_OFFERING, TAG_HOST, OnPremProvider

__all__ = [
    "ONPREM_OFFERING",
    "TAG_HOST",
    "OnPremNodeConfig",
    "OnPremProvider",
    "OnPremProviderConfig",
    "free_hosts",
]

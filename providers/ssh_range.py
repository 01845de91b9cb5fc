"""Where SSH may come from, as a cloud firewall rule: one network, parsed with `ipaddress` (so
`1.2.3.4/0` and `0::/0` are seen for what they are: the whole internet), and nothing wider than a
/8 (IPv4) or a /32 (IPv6) unless the config says `allow_ssh_from_anywhere: true`."""

from __future__ import annotations

import ipaddress

WIDEST_PREFIX = {4: 8, 6: 32}  # shorter prefixes than these need the explicit consent


def check_ssh_range(cidr: str, allow_anywhere: bool) -> str:
    """The range in its normal form (`1.2.3.4/0` -> `0.0.0.0/0`), or a one-line ValueError."""
    try:
        network = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError as exc:
        raise ValueError(
            f"ssh_cidr {cidr!r} is not a network ({exc}); write it like 203.0.113.7/32"
        ) from None
    widest = WIDEST_PREFIX[network.version]
    if network.prefixlen < widest and not allow_anywhere:
        reach = "the whole internet" if network.prefixlen == 0 else (
            f"{network.num_addresses:,} addresses"
        )
        raise ValueError(
            f"ssh_cidr {cidr} ({network}) opens SSH to {reach}; narrow it to your range (at most "
            f"a /{widest}), or set allow_ssh_from_anywhere: true if you really mean it"
        )
    return str(network)

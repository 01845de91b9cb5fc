"""The Google Compute Engine node provider (google-cloud-compute, REST transport).

Needs the `gcp` extra (`pip install rayctl[gcp]`); the SDK is imported only when used.
"""

from __future__ import annotations

from providers.gcp.provider import GCPProvider

__all__ = ["GCPProvider"]

"""A fake Google Compute Engine REST API for testing the gcp provider with the real
google-cloud-compute client (REST transport, anonymous credentials, custom endpoint)."""

from __future__ import annotations

from gcp_fake.api_errors import ComputeApiError
from gcp_fake.server import FakeCompute
from gcp_fake.state import ComputeState

__all__ = ["ComputeApiError", "ComputeState", "FakeCompute"]

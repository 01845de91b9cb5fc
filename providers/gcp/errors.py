"""Translation of google-cloud-compute failures into the provider error tree, in one place.

    failed call (google.api_core exception) or failed operation (Operation.error)
      ZONE_RESOURCE_POOL_EXHAUSTED[_WITH_DETAILS], stockouts  -> CapacityError(offering)
      QUOTA_EXCEEDED, 403 quotaExceeded                        -> QuotaError(quota)
      429, 500, 503, rate limits, connection failures          -> TransientError
      401, 403 permission                                      -> AuthError (names the permission)
      404                                                      -> InstanceNotFound
      400 and other operation errors                           -> ConfigError
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from providers.base import (
    AuthError,
    CapacityError,
    ConfigError,
    InstanceNotFound,
    Offering,
    ProviderError,
    QuotaError,
    TransientError,
)

STOCKOUT_CODES = frozenset({
    "ZONE_RESOURCE_POOL_EXHAUSTED",
    "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
    "RESOURCE_POOL_EXHAUSTED",
    "STOCKOUT",
})
QUOTA_CODES = frozenset({"QUOTA_EXCEEDED", "quotaExceeded"})
TRANSIENT_CODES = frozenset({
    "RESOURCE_OPERATION_RATE_EXCEEDED",
    "rateLimitExceeded",
    "userRateLimitExceeded",
    "backendError",
    "INTERNAL_ERROR",
})
_QUOTA_IN_MESSAGE = re.compile(r"Quota '([^']+)' exceeded")
_PERMISSION_IN_MESSAGE = re.compile(r"Required '([\w.]+)' permission")


class OperationFailed(Exception):
    """A zone or global operation finished with `error` set (translated by `gcp_errors`)."""

    def __init__(self, operation: Any) -> None:
        self.operation = operation
        errors = list(operation.error.errors)
        self.codes = [e.code for e in errors]
        self.messages = [e.message for e in errors]
        self.quota_names = [
            d.quota_info.metric_name or d.quota_info.limit_name
            for e in errors for d in e.error_details if d.quota_info.metric_name
            or d.quota_info.limit_name
        ]
        super().__init__(f"operation {operation.name} failed: " + "; ".join(
            f"{c}: {m}" for c, m in zip(self.codes, self.messages, strict=True)))


def check_operation(operation: Any) -> Any:
    """Return a finished operation, or raise OperationFailed if it carries errors."""
    if operation.error and operation.error.errors:
        raise OperationFailed(operation)
    return operation


@contextmanager
def gcp_errors(what: str, offering: Offering | None = None) -> Iterator[None]:
    """Run Compute API calls, re-raising their failures as ProviderError subclasses.

    `what` names the action for the message ("launch n1-standard-8 in us-central1-a").
    `offering` is what a stockout makes unavailable.
    """
    try:
        yield
    except ProviderError:
        raise
    except OperationFailed as exc:
        raise _from_operation(exc, what, offering) from exc
    except Exception as exc:
        translated = _from_call(exc, what, offering)
        if translated is None:
            raise
        raise translated from exc


def _from_operation(exc: OperationFailed, what: str, offering: Offering | None) -> ProviderError:
    codes = set(exc.codes)
    text = f"{what}: {exc}"
    if codes & STOCKOUT_CODES and offering is not None:
        return CapacityError(offering, f"{text} (GCE has no capacity there now; try another "
                                       "zone or machine type)")
    if codes & QUOTA_CODES:
        return _quota_error(_quota_name(exc.quota_names, exc.messages), text)
    if codes & TRANSIENT_CODES:
        return TransientError(text)
    return ConfigError(text)


def _from_call(exc: Exception, what: str, offering: Offering | None) -> ProviderError | None:
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return AuthError(f"{what}: no Google credentials found ({exc}); run `gcloud auth "
                         "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS")
    if _is_connection_error(exc):
        return TransientError(f"{what}: cannot reach the Compute API: {exc}")
    if not isinstance(exc, gexc.GoogleAPICallError):
        return None
    reasons = {str(e.get("reason", "")) for e in exc.errors if isinstance(e, dict)}
    messages = [str(e.get("message", "")) for e in exc.errors if isinstance(e, dict)]
    messages.append(exc.message or "")
    text = f"{what}: {exc.message}"
    if reasons & QUOTA_CODES or (exc.code == 403 and _quota_name([], messages) != "unknown"):
        return _quota_error(_quota_name([], messages), text)
    if reasons & STOCKOUT_CODES and offering is not None:
        return CapacityError(offering, text)
    if exc.code in (429, 500, 502, 503, 504) or reasons & TRANSIENT_CODES:
        return TransientError(text)
    if exc.code in (401, 403):
        return AuthError(_auth_message(exc.code, text, messages))
    if exc.code == 404:
        return InstanceNotFound(text)
    return ConfigError(text)


def _is_connection_error(exc: Exception) -> bool:
    try:
        import requests
    except ImportError:  # pragma: no cover - requests comes with google-auth
        return False
    return isinstance(exc, requests.ConnectionError | requests.Timeout)


def _quota_name(quota_names: list[str], messages: list[str]) -> str:
    # The message names the quota as the console lists it ("NVIDIA_T4_GPUS"); quotaInfo's
    # metric name is the fallback.
    for message in messages:
        match = _QUOTA_IN_MESSAGE.search(message)
        if match:
            return match.group(1)
    return quota_names[0] if quota_names else "unknown"


def _quota_error(quota: str, text: str) -> QuotaError:
    return QuotaError(quota, f"quota {quota} exceeded: {text} (raise it under IAM & Admin > "
                             "Quotas, or lower max_workers / pick another region)")


def _auth_message(code: int, text: str, messages: list[str]) -> str:
    for message in messages:
        match = _PERMISSION_IN_MESSAGE.search(message)
        if match:
            return (f"{text} (missing permission {match.group(1)}: grant a role that includes "
                    "it, e.g. roles/compute.admin, to the account rayctl runs as)")
    if code == 401:
        return (f"{text} (credentials were rejected; run `gcloud auth application-default "
                "login` or check GOOGLE_APPLICATION_CREDENTIALS)")
    return f"{text} (permission denied; check the roles of the account rayctl runs as)"

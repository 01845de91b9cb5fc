"""Translation of botocore errors into the providers/base.py error tree, and the bounded
jittered retry of TransientError. This is the only place that reads AWS error codes.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from providers.base import (
    AuthError,
    CapacityError,
    ConfigError,
    InstanceNotFound,
    Market,
    Offering,
    ProviderError,
    QuotaError,
    TransientError,
)

T = TypeVar("T")

CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "Unsupported",  # the type is not offered in that zone
    }
)
QUOTA_CODES = frozenset({"InstanceLimitExceeded", "VcpuLimitExceeded"})
TRANSIENT_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
    }
)
AUTH_CODES = frozenset(
    {"UnauthorizedOperation", "AuthFailure", "AccessDenied", "AccessDeniedException"}
)
CONFIG_CODES = frozenset(
    {
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "InvalidParameter",
        "InvalidAMIID.NotFound",
        "InvalidAMIID.Malformed",
        "InvalidKeyPair.NotFound",
        "InvalidSubnetID.NotFound",
        "InvalidGroup.NotFound",
        "InvalidInstanceType",
        "IdempotentParameterMismatch",
        "MissingParameter",
    }
)
NOT_FOUND_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})

_PERMISSION = re.compile(r"not authorized to perform:?\s+([\w-]+:[\w*]+)")
_INSTANCE_ID = re.compile(r"i-[0-9a-f]+")

# Service Quotas names by instance family letter(s); the rest share the Standard bucket.
_QUOTA_BUCKETS = {
    "g": "G and VT",
    "vt": "G and VT",
    "p": "P",
    "x": "X",
    "f": "F",
    "inf": "Inf",
    "trn": "Trn",
    "dl": "DL",
}


def quota_name(code: str, offering: Offering | None) -> str:
    """The Service Quotas name the user must raise, as the AWS console spells it."""
    if code == "InstanceLimitExceeded" or offering is None:
        return "EC2 instance limit (Service Quotas: 'Running On-Demand ... instances' for the type)"
    family = re.match(r"[a-z]+", offering.instance_type)
    letters = family.group(0) if family else ""
    bucket = (
        _QUOTA_BUCKETS.get(letters)
        or _QUOTA_BUCKETS.get(letters[:1] if letters[:1] == "g" else "")  # gr6 is a G type
        or "Standard (A, C, D, H, I, M, R, T, Z)"
    )
    if offering.market is Market.SPOT:
        return f"EC2 vCPU quota 'All {bucket} Spot Instance Requests'"
    return f"EC2 vCPU quota 'Running On-Demand {bucket} instances'"


def missing_permission(message: str, operation: str) -> str:
    """The IAM action a denial names, or the one the failing call needed."""
    found = _PERMISSION.search(message)
    if found:
        return found.group(1)
    return f"ec2:{operation}" if operation else "unknown"


def _code_message(exc: Exception) -> tuple[str, str, str]:
    response: dict[str, Any] = getattr(exc, "response", {}) or {}
    error = response.get("Error", {})
    return (
        str(error.get("Code", "")),
        str(error.get("Message", "")),
        getattr(exc, "operation_name", ""),
    )


def translate(exc: Exception, offering: Offering | None = None) -> ProviderError:
    """The ProviderError a botocore exception means (the caller raises it `from exc`)."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return AuthError("no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID")
    if isinstance(exc, EndpointConnectionError):
        return TransientError(f"cannot reach the AWS endpoint: {exc}")
    if not isinstance(exc, ClientError):
        return ProviderError(f"AWS call failed: {exc}")
    code, message, operation = _code_message(exc)
    if code in CAPACITY_CODES and offering is not None:
        return CapacityError(offering, f"{code} for {offering.key()}: {message}")
    if code in QUOTA_CODES:
        quota = quota_name(code, offering)
        return QuotaError(quota, f"{code}: {message} Raise the quota: {quota}.")
    if code in TRANSIENT_CODES:
        return TransientError(f"{code} on {operation}: {message}")
    if code in AUTH_CODES:
        permission = missing_permission(message, operation)
        return AuthError(
            f"AWS denied {operation} ({code}): the credentials lack the IAM permission "
            f"{permission}. Grant it to the user or role rayctl runs as."
        )
    if code == "InvalidParameterValue" and "IAM Instance Profile" in message:
        # A just-created instance profile takes ~10 s to become usable by EC2.
        return TransientError(f"instance profile not yet visible to EC2: {message}")
    if code in NOT_FOUND_CODES:
        return InstanceNotFound(f"{code}: {message}")
    if code in CONFIG_CODES:
        return ConfigError(f"{code} on {operation}: {message} (check provider/node_config)")
    return ProviderError(f"{code or 'error'} on {operation}: {message}")


def error_code(exc: BaseException | None) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    return _code_message(exc)[0] if isinstance(exc, Exception) else ""


def missing_instance_ids(exc: BaseException | None) -> list[str]:
    """The ids an InvalidInstanceID.NotFound error names ("The instance IDs 'i-1, i-2' ...")."""
    if not isinstance(exc, Exception):
        return []
    _, message, _ = _code_message(exc)
    return _INSTANCE_ID.findall(message)


@contextmanager
def translated(offering: Offering | None = None) -> Iterator[None]:
    """Run AWS calls, re-raising botocore errors as ProviderErrors chained to the original."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, offering) from exc


class Retrier:
    """Calls a function, retrying TransientError with full-jitter exponential backoff."""

    def __init__(
        self,
        sleep: Callable[[float], None],
        rng: random.Random,
        attempts: int = 5,
        base_s: float = 0.5,
        cap_s: float = 20.0,
    ) -> None:
        self._sleep, self._rng = sleep, rng
        self.attempts, self._base_s, self._cap_s = attempts, base_s, cap_s

    def __call__(self, fn: Callable[[], T], offering: Offering | None = None) -> T:
        for attempt in range(self.attempts):
            try:
                with translated(offering):
                    return fn()
            except TransientError:
                if attempt == self.attempts - 1:
                    raise
                self._sleep(self._rng.uniform(0, min(self._cap_s, self._base_s * 2**attempt)))
        raise AssertionError("unreachable")

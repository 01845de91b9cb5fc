"""The translation of AWS error codes into the provider error tree (no AWS needed)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from providers.aws.errors import translate
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

OFFERING = Offering("p4d.24xlarge", "us-west-2a", Market.ON_DEMAND)


def _error(code: str, message: str = "m", operation: str = "RunInstances") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("InsufficientInstanceCapacity", "m", CapacityError),
        ("RequestLimitExceeded", "m", TransientError),
        (
            "InvalidParameterValue",
            "Value (x) for parameter iamInstanceProfile.name is invalid. "
            "Invalid IAM Instance Profile name",
            TransientError,
        ),  # profile not propagated yet
        ("InvalidParameterValue", "bad BlockDeviceMappings", ConfigError),
        ("InvalidAMIID.NotFound", "m", ConfigError),
        ("InvalidInstanceID.NotFound", "m", InstanceNotFound),
        ("SomethingNew", "m", ProviderError),
    ],
)
def test_codes_map_to_the_error_tree(code: str, message: str, expected: type) -> None:
    assert type(translate(_error(code, message), OFFERING)) is expected


def test_quota_names_follow_the_instance_family() -> None:
    error = translate(_error("VcpuLimitExceeded"), OFFERING)
    assert isinstance(error, QuotaError)
    assert error.quota == "EC2 vCPU quota 'Running On-Demand P instances'"
    standard = translate(_error("VcpuLimitExceeded"), Offering("m5.large", "", Market.SPOT))
    assert isinstance(standard, QuotaError)
    assert "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests" in standard.quota


def test_auth_error_without_a_named_permission_names_the_call() -> None:
    error = translate(_error("UnauthorizedOperation", "You are not authorized", "StopInstances"))
    assert isinstance(error, AuthError) and "ec2:StopInstances" in str(error)

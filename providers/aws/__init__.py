"""The AWS (EC2) node provider. boto3 is imported only when a provider first calls AWS."""

from __future__ import annotations

from providers.aws.provider import AWSProvider

__all__ = ["AWSProvider"]

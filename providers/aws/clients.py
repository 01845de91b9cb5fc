"""The boto3 clients of one provider, created lazily (boto3 is imported only when first used)."""

from __future__ import annotations

from typing import Any

# botocore's own retries are switched off: ICE arrives as HTTP 500, which botocore would retry
# three times before we could fail over, and throttling is retried by errors.Retrier instead,
# with a bound and a clock the tests control.
_BOTOCORE_RETRIES = {"mode": "standard", "total_max_attempts": 1}


class AWSClients:
    """EC2 and IAM clients for one region; tests reach `ec2.meta.events` to inject errors."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._ec2: Any = None
        self._iam: Any = None

    def _client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(retries=_BOTOCORE_RETRIES, user_agent_extra="rayctl")  # type: ignore[arg-type]
        return boto3.session.Session().client(service, region_name=self.region, config=config)

    @property
    def ec2(self) -> Any:
        if self._ec2 is None:
            self._ec2 = self._client("ec2")
        return self._ec2

    @property
    def iam(self) -> Any:
        if self._iam is None:
            self._iam = self._client("iam")
        return self._iam

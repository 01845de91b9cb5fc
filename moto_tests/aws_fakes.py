"""Test doubles for the AWS provider tests: config sections, a virtual sleep and clock, and
botocore event hooks that inject AWS errors the way EC2 returns them (over the wire, so
botocore's retry settings apply) and record the calls a client makes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

REGION = "us-west-2"
AMI = "ami-12c6146b"  # present in moto's default image set in every region
CLUSTER = "test"
SSH_CIDR = "203.0.113.7/32"


def provider_section(**overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "type": "aws",
        "region": REGION,
        "availability_zone": "us-west-2a,us-west-2b",
        "ssh_cidr": SSH_CIDR,
    }
    section.update(overrides)
    return section


def node_types_section() -> dict[str, dict[str, Any]]:
    return {
        "head": {"node_config": {"InstanceType": "m5.large", "ImageId": AMI}, "resources": {}},
        "cpu": {
            "node_config": {"InstanceType": ["m5.large", "m5.xlarge"], "ImageId": AMI},
            "min_workers": 0,
            "max_workers": 10,
        },
        "gpu_spot": {
            "node_config": {
                "InstanceType": "g4dn.xlarge",
                "ImageId": AMI,
                "InstanceMarketOptions": {"MarketType": "spot"},
            },
            "max_workers": 4,
        },
    }


@dataclass
class VirtualSleep:
    """Records requested sleeps instead of waiting (backoff tests assert on the delays)."""

    slept: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


@dataclass
class VirtualClock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- botocore event hooks ---------------------------------------------------------------------


class _RawBody(io.BytesIO):
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.getvalue()


def _error_xml(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
        f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        "<RequestID>injected</RequestID></Response>"
    ).encode()


@dataclass
class Injection:
    """An error (or a canned reply) injected `times` times into one EC2 operation."""

    code: str
    status: int
    times: int
    message: str
    when: Callable[[dict[str, Any]], bool]
    reply: dict[str, Any] | None = None
    attempts: int = 0  # requests the hook saw (botocore retries included, on the wire)
    injected: int = 0

    def _due(self, params: dict[str, Any]) -> bool:
        self.attempts += 1
        if self.injected >= self.times or not self.when(params):
            return False
        self.injected += 1
        return True

    def on_call(self, params: dict[str, Any], **_: Any) -> Any:
        """before-call: short-circuits the call, so moto never sees (nor acts on) it."""
        from botocore.awsrequest import AWSResponse

        body = params.get("body")  # EC2's query protocol: the serialized arguments, flat
        if not self._due(body if isinstance(body, dict) else {}):
            return None
        status = 200 if self.reply is not None else self.status
        parsed = (
            self.reply
            if self.reply is not None
            else {"Error": {"Code": self.code, "Message": self.message}}
        )
        parsed = {**parsed, "ResponseMetadata": {"HTTPStatusCode": status}}
        return AWSResponse("https://injected", status, {}, _RawBody(b"")), parsed

    def on_send(self, request: Any, **_: Any) -> Any:
        """before-send: a reply off the wire, so botocore's retry policy applies to it. moto's
        own handler still runs (and acts) for every attempt."""
        from botocore.awsrequest import AWSResponse

        body = request.body or b""
        text = body.decode() if isinstance(body, bytes) else str(body)
        if not self._due({k: v[0] for k, v in parse_qs(text).items()}):
            return None
        return AWSResponse(
            request.url, self.status, {}, _RawBody(_error_xml(self.code, self.message))
        )


def inject(
    client: Any,
    operation: str,
    code: str = "",
    *,
    status: int = 400,
    times: int = 1,
    message: str = "injected",
    when: Callable[[dict[str, Any]], bool] = lambda params: True,
    reply: dict[str, Any] | None = None,
    on_the_wire: bool = False,
) -> Injection:
    """Make `client` see an AWS error (or `reply`) for `operation` instead of moto's answer."""
    injection = Injection(code, status, times, message, when, reply)
    if on_the_wire:
        client.meta.events.register_first(f"before-send.ec2.{operation}", injection.on_send)
    else:
        client.meta.events.register_first(f"before-call.ec2.{operation}", injection.on_call)
    return injection


@dataclass
class CallRecorder:
    operations: list[str] = field(default_factory=list)

    def __call__(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)

    def count(self, operation: str) -> int:
        return self.operations.count(operation)


def record_calls(client: Any) -> CallRecorder:
    """Record every API call the client makes (one per call; botocore retries not counted)."""
    recorder = CallRecorder()
    client.meta.events.register("before-call", recorder)
    return recorder

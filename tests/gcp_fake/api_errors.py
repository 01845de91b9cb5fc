"""Errors of the fake Compute API, in the JSON shape the real one answers, plus the request
checks that produce them (request ids, label syntax, message schemas)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
MAX_LABELS = 64

_STATUS_TEXT = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED",
                500: "INTERNAL", 503: "UNAVAILABLE"}


@dataclass
class ComputeApiError(Exception):
    """An HTTP error answer: `{"error": {"code", "message", "errors": [{message, domain,
    reason}]}}`, as documented for the Compute API."""

    status: int
    reason: str
    message: str
    domain: str = "global"

    def body(self) -> bytes:
        return json.dumps({"error": {
            "code": self.status,
            "message": self.message,
            "errors": [{"message": self.message, "domain": self.domain, "reason": self.reason}],
            "status": _STATUS_TEXT.get(self.status, "UNKNOWN"),
        }}).encode()


def invalid(field: str, value: Any, why: str) -> ComputeApiError:
    return ComputeApiError(400, "invalid", f"Invalid value for field '{field}': '{value}'. {why}")


def not_found(resource: str) -> ComputeApiError:
    return ComputeApiError(404, "notFound", f"The resource '{resource}' was not found")


def already_exists(resource: str) -> ComputeApiError:
    return ComputeApiError(409, "alreadyExists", f"The resource '{resource}' already exists")


def quota_exceeded(metric: str, region: str) -> ComputeApiError:
    return ComputeApiError(403, "quotaExceeded",
                           f"Quota '{metric}' exceeded.  Limit: 0.0 in region {region}.",
                           domain="usageLimits")


def permission_denied(permission: str, resource: str) -> ComputeApiError:
    return ComputeApiError(403, "forbidden",
                           f"Required '{permission}' permission for '{resource}'")


def rate_limited() -> ComputeApiError:
    return ComputeApiError(429, "rateLimitExceeded",
                           "Rate Limit Exceeded: too many requests, retry later",
                           domain="usageLimits")


def unavailable() -> ComputeApiError:
    return ComputeApiError(503, "backendError", "The service is currently unavailable.")


def check_request_id(request_id: str | None) -> str:
    """Our fake requires a requestId on every instance mutation and checks it is a UUID."""
    if not request_id:
        raise invalid("requestId", "", "requestId is required by this fake (it makes retries "
                      "safe)")
    try:
        parsed = uuid.UUID(request_id)
    except ValueError:
        raise invalid("requestId", request_id, "The requestId must be a valid UUID.") from None
    if parsed.int == 0:
        raise invalid("requestId", request_id, "The zero UUID is not supported.")
    return request_id


def check_labels(labels: dict[str, str], field: str = "resource.labels") -> None:
    if len(labels) > MAX_LABELS:
        raise invalid(field, len(labels), f"At most {MAX_LABELS} labels are allowed.")
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            raise invalid(f"{field}", key, "Label keys must start with a lowercase letter and "
                          "contain only lowercase letters, digits, '_' and '-' (max 63).")
        if not _LABEL_VALUE.match(value):
            raise invalid(f"{field}.{key}", value, "Label values may contain only lowercase "
                          "letters, digits, '_' and '-' (max 63).")


def check_name(name: str, field: str = "resource.name") -> None:
    if not _NAME.match(name or ""):
        raise invalid(field, name, "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}"
                      "[a-z0-9])?)'")


def parse_body(message_type: Any, raw: bytes, field: str) -> dict[str, Any]:
    """Parse with the compute_v1 message type, rejecting unknown fields as the API does;
    return the message as camelCase JSON with defaults filled in."""
    from google.protobuf.json_format import ParseError

    try:
        message = message_type.from_json(raw.decode() or "{}", ignore_unknown_fields=False)
    except ParseError as exc:
        first_line = str(exc).split("\n")[0]
        raise ComputeApiError(400, "invalid", f"Invalid JSON payload received for "
                              f"'{field}'. {first_line}") from None
    result: dict[str, Any] = json.loads(message_type.to_json(message))
    return result

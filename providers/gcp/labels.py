"""How rayctl tags map onto GCE labels, names and metadata.

GCE labels allow only lowercase letters, digits, `-` and `_` (values up to 63 characters), so
labels carry a sanitised copy used for filtering, and the instance metadata item `rayctl-tags`
carries the exact tags as JSON (a launch-config hash or a node type like `gpu.worker` survive).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from providers.base import Offering

TAGS_METADATA_KEY = "rayctl-tags"
SSH_KEYS_METADATA_KEY = "ssh-keys"
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_NOT_LABEL_CHAR = re.compile(r"[^a-z0-9_-]")
_NOT_NAME_CHAR = re.compile(r"[^a-z0-9-]")
# Fixed namespace so a request id maps to the same GCE requestId in every process, forever.
_REQUEST_NAMESPACE = uuid.UUID("5b0e8a3e-6f0c-4d2a-9f1e-7c4b2d9a1e30")


def label_value(value: str) -> str:
    """A GCE-valid label value for `value`; long or lossy values keep a hash suffix."""
    clean = _NOT_LABEL_CHAR.sub("-", value.lower())
    if clean == value and len(clean) <= 63:
        return clean
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{clean[:54]}-{digest}"


def label_key(key: str) -> str:
    """A GCE-valid label key for a tag key (`Name` becomes `name`)."""
    clean = label_value(key)
    return clean if clean[:1].isalpha() else f"k-{clean}"[:63]


def labels_for(tags: Mapping[str, str]) -> dict[str, str]:
    return {label_key(k): label_value(v) for k, v in tags.items()}


def is_valid_label(key: str, value: str) -> bool:
    return bool(_LABEL_KEY.match(key) and _LABEL_VALUE.match(value))


def resource_name(*parts: str) -> str:
    """A GCE resource name (`[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters)."""
    raw = "-".join(_NOT_NAME_CHAR.sub("-", p.lower()) for p in parts if p)
    raw = re.sub(r"-+", "-", raw).strip("-")
    if not raw[:1].isalpha():
        raw = "r-" + raw
    return raw[:63].rstrip("-")


def network_tag(cluster_name: str) -> str:
    """The network tag every node of the cluster carries; firewall rules target it."""
    return resource_name("rayctl", cluster_name)


def request_uuid(key: str) -> str:
    """The GCE `requestId` for one of our API requests, e.g. key `launch/<request>/<offering>`:
    a retry sends the same UUID, so GCE returns the first operation instead of starting a
    second one."""
    return str(uuid.uuid5(_REQUEST_NAMESPACE, key))


def instance_names(cluster_name: str, request_id: str, offering: Offering, count: int) -> list[str]:
    """Deterministic names: a retried insert hits `alreadyExists` instead of doubling."""
    base = request_uuid(f"name/{request_id}/{offering.key()}").replace("-", "")[:10]
    prefix = resource_name("rayctl", cluster_name)[:40]
    return [resource_name(prefix, base, str(i)) for i in range(count)]


def tags_metadata(tags: Mapping[str, str]) -> str:
    return json.dumps(dict(tags), sort_keys=True)


def tags_of(instance: Any) -> dict[str, str]:
    """The exact tags of a compute_v1 Instance: metadata JSON, else the labels."""
    for item in instance.metadata.items:
        if item.key == TAGS_METADATA_KEY:
            try:
                return {str(k): str(v) for k, v in json.loads(item.value).items()}
            except (ValueError, AttributeError):
                break
    return dict(instance.labels)


def label_filter(labels: Mapping[str, str]) -> str:
    """A Compute API list filter matching every label: `(labels.k = "v") (labels.k2 = "v2")`."""
    return " ".join(f'(labels.{k} = "{v}")' for k, v in sorted(labels.items()))

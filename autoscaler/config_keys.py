"""Every key of Ray's cluster YAML that rayctl does not implement, and how config problems are
worded: unknown keys (with the nearest known one), unsupported keys, pydantic errors as
`path: hint, got value`. Supported keys are the fields of the models in `autoscaler/config.py`.

Choice per key: a key whose absence would launch something other than what the user asked for
is an *error* (`docker`: commands would run outside the container; `head_node` / `worker_nodes`:
the machine spec would be dropped; top-level `min_workers`: nodes the user wants would never
start). A key Ray itself deprecated, whose absence only changes tuning, is a *warning*.
"""

from __future__ import annotations

import difflib
import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Unsupported:
    severity: Severity
    hint: str


# Top-level Ray keys (ray/autoscaler/ray-schema.json) that rayctl does not implement.
UNSUPPORTED_TOP_LEVEL: Mapping[str, Unsupported] = {
    "docker": Unsupported(
        Severity.ERROR,
        "rayctl runs commands on the node itself; install what you need in setup_commands "
        "or bake it into the image (node_config)",
    ),
    "head_node": Unsupported(
        Severity.ERROR,
        "this is Ray's legacy format; move it to available_node_types.<type>.node_config "
        "and name that type in head_node_type",
    ),
    "worker_nodes": Unsupported(
        Severity.ERROR,
        "this is Ray's legacy format; move it to available_node_types.<type>.node_config",
    ),
    "min_workers": Unsupported(
        Severity.ERROR,
        "set min_workers per node type under available_node_types (Ray deprecated the global one)",
    ),
    "initial_workers": Unsupported(
        Severity.WARNING, "deprecated in Ray; use min_workers per node type; ignored"
    ),
    "autoscaling_mode": Unsupported(
        Severity.WARNING, "deprecated in Ray; use upscaling_speed; ignored"
    ),
    "target_utilization_fraction": Unsupported(
        Severity.WARNING, "deprecated in Ray; use upscaling_speed; ignored"
    ),
    "worker_default_node_type": Unsupported(
        Severity.WARNING, "deprecated in Ray; the autoscaler picks the type per demand; ignored"
    ),
}

# Keys of one available_node_types entry that rayctl does not implement.
UNSUPPORTED_NODE_TYPE: Mapping[str, Unsupported] = {
    "docker": UNSUPPORTED_TOP_LEVEL["docker"],
}

# Ray provider types that rayctl has no provider for (a nicer message than "unknown type").
RAY_ONLY_PROVIDER_TYPES = frozenset(
    {"azure", "kubernetes", "kuberay", "vsphere", "readonly", "fake_multinode", "aliyun"}
)


def nearest(key: str, known: Iterable[str]) -> str | None:
    """The known key closest to a misspelt one, or None when nothing is close."""
    matches = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key_error(path: str, key: str, known: Iterable[str]) -> str:
    where = f"{path}.{key}" if path else key
    known = sorted(known)
    guess = nearest(key, known)
    if guess is not None:
        return f"{where}: unknown key; did you mean `{guess}`?"
    if not known:
        return f"{where}: unknown key; this section takes no keys"
    return f"{where}: unknown key; known keys: {', '.join(known)}"


def unsupported_message(path: str, key: str, entry: Unsupported) -> str:
    where = f"{path}.{key}" if path else key
    return f"{where} is not supported by rayctl; {entry.hint}"


def screen_keys(
    section: Mapping[str, Any],
    path: str,
    supported: Iterable[str],
    unsupported: Mapping[str, Unsupported],
    errors: list[str],
    warnings: list[str],
) -> dict[str, Any]:
    """Check a mapping's keys; return the supported part, appending errors and warnings.

    Done before pydantic so an unknown key gets a suggestion and an unsupported one a reason,
    instead of pydantic's generic "extra inputs are not permitted".
    """
    supported_set = set(supported)
    kept: dict[str, Any] = {}
    for key, value in section.items():
        key_str = str(key)
        if key_str in supported_set:
            kept[key_str] = value
        elif key_str in unsupported:
            entry = unsupported[key_str]
            if entry.severity is Severity.WARNING:
                warnings.append(unsupported_message(path, key_str, entry))
            elif _is_disabled_docker(key_str, value):
                # Ray's examples ship `docker: {image: ""}`, which Ray itself reads as "off".
                warnings.append(f"{key_str}: ignored (image is empty, so docker is off)")
            else:
                errors.append(unsupported_message(path, key_str, entry))
        else:
            errors.append(unknown_key_error(path, key_str, supported_set | set(unsupported)))
    return kept


def _is_disabled_docker(key: str, value: Any) -> bool:
    if key != "docker" or not isinstance(value, Mapping):
        return False
    images = [value.get(k) for k in ("image", "head_image", "worker_image")]
    return not any(images)


# --- pydantic errors as one line each -------------------------------------------------------------

_HINTS = {
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def describe_validation_error(
    exc: ValidationError, prefix: str = "", known_keys: list[str] | None = None
) -> list[str]:
    """One `path: hint, got value` line per pydantic error."""
    lines = []
    for err in exc.errors():
        loc = [prefix] if prefix else []
        path = _format_loc([*loc, *err["loc"]])
        kind = err["type"]
        if kind == "missing":
            lines.append(f"{path}: is required")
        elif kind == "extra_forbidden":
            key = str(err["loc"][-1])
            parent = _format_loc([*loc, *err["loc"][:-1]])
            lines.append(unknown_key_error(parent, key, known_keys or []))
        elif kind == "value_error" and isinstance(err.get("input"), Mapping):
            # a check over a whole section: its message names the keys and values itself
            lines.append(f"{path}: {err['msg'].removeprefix('Value error, ')}")
        else:
            hint = _hint(kind, err.get("ctx") or {}, err["msg"])
            lines.append(f"{path}: {hint}, got {_show(err.get('input'))}")
    return lines


def _hint(kind: str, ctx: Mapping[str, Any], fallback: str) -> str:
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
              "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)  # pydantic states `ge=0` on a float field as 0.0
        return f"must be {bounds[kind]} {limit}"
    if kind in ("enum", "literal_error") and "expected" in ctx:
        return f"must be one of {ctx['expected']}"
    return _HINTS.get(kind, fallback)


def _format_loc(loc: list[Any] | tuple[Any, ...]) -> str:
    out = ""
    if len(loc) >= 2 and loc[-1] == "[key]":  # pydantic's mark for a bad dict key: the key is it
        loc = [*loc[:-2], f"{loc[-2]!r} (the name)" if loc[-2] else "''"]
    for part in loc:
        if isinstance(part, str) and not part.isprintable():
            part = repr(part)  # a key with a newline or a control character stays on one line
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "top level"


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

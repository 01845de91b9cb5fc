"""Which class implements a `provider: {type: ...}` section, and building one.

Built-in types are named here and imported lazily (a cloud SDK loads only when its provider is
used). Any other provider is a plug-in, as in Ray: `provider: {type: external, module:
pkg.mod.Class}` imports that class in every rayctl process that reads the config (`rayctl up`
and the head's monitor), so the module must be importable on the head too.

Every provider class is constructed as

    Provider(cluster_name, provider_config, node_types, *, auth=None)

`provider_config` is the section without `type` / `module`, `node_types` maps each type name to
its `available_node_types` entry, `auth` is the cluster's `auth:` section (ssh_user,
ssh_private_key, ...) as a dict. The class carries `config_model` / `node_config_model`
(pydantic) that validate its section and each node_config before anything is created.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from providers.base import ConfigError, NodeProvider

EXTERNAL = "external"  # Ray's name for a provider class loaded from `module`

_BUILT_IN: dict[str, str] = {
    # name -> "module:Class"
    "local": "providers.local:LocalProvider",
    "onprem": "providers.onprem:OnPremProvider",
    "aws": "providers.aws:AWSProvider",
    "gcp": "providers.gcp:GCPProvider",
}
_REGISTRY: dict[str, str] = dict(_BUILT_IN)

# Keys of the `provider:` section the registry reads; the class's config_model sees the rest.
REGISTRY_KEYS = ("type", "module")


def register(name: str, target: str) -> None:
    """Register a provider class under a type name ("module:Class" or "module.Class")."""
    _REGISTRY[name] = target


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def provider_names() -> list[str]:
    return sorted({*_REGISTRY, EXTERNAL})


def provider_class(section: Mapping[str, Any]) -> type[Any]:
    """The class a `provider:` section names. Raises ConfigError (unknown type, a module that
    does not import, a missing class) and lets ImportError of a missing cloud SDK through."""
    kind = section.get("type")
    if kind == EXTERNAL:
        target = section.get("module")
        if not isinstance(target, str) or not target.strip():
            raise ConfigError(
                "provider.module: `type: external` needs `module: package.module.ClassName`, "
                "the provider class to load"
            )
        return _load(target, external=True)
    try:
        target = _REGISTRY[str(kind)]
    except KeyError:
        known = ", ".join(provider_names())
        raise ConfigError(f"unknown provider type {kind!r}; known types: {known}") from None
    return _load(target, external=False)


def provider_section(section: Mapping[str, Any]) -> dict[str, Any]:
    """The section as the provider class sees it: without the registry's own keys."""
    return {k: v for k, v in section.items() if k not in REGISTRY_KEYS}


def build_provider(
    cluster_name: str,
    section: Mapping[str, Any],
    node_types: Mapping[str, Mapping[str, Any]],
    auth: Mapping[str, Any] | None = None,
) -> NodeProvider:
    cls = provider_class(section)
    provider: NodeProvider = cls(
        cluster_name, provider_section(section), node_types, auth=dict(auth or {})
    )
    return provider


def _load(target: str, *, external: bool) -> type[Any]:
    module_name, sep, class_name = target.partition(":")
    if not sep:
        module_name, _, class_name = target.rpartition(".")
    if not module_name or not class_name:
        raise ConfigError(
            f"provider.module: {target!r} must name a class, like `my_pkg.my_module.MyProvider`"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if not external:
            raise  # a built-in provider whose cloud SDK is not installed
        raise ConfigError(
            f"provider.module: cannot import {module_name!r} ({exc}); install it on this "
            "machine and the head, or fix the name"
        ) from exc
    try:
        cls = getattr(module, class_name)
    except AttributeError:
        raise ConfigError(
            f"provider.module: {module_name!r} has no class {class_name!r}"
        ) from None
    if not isinstance(cls, type):
        raise ConfigError(f"provider.module: {target!r} is not a class")
    return cls

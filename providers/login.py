"""Which SSH login a cloud provider's nodes are reached with: the cluster's `auth:` section first
(Ray's place for it), then what the provider section or its bootstrap names. Pure, and free of
any SSH client, so a provider checks it when it is built."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.base import ConfigError

DEFAULT_SSH_USER = "ubuntu"  # the login of Ubuntu images, as in Ray


def cloud_login(
    auth: Mapping[str, Any] | None, *, provider_user: str | None, provider_key: str | None
) -> dict[str, str]:
    """The `auth:` mapping for the provider's runners (ssh_user, ssh_private_key, ...).

    `auth.ssh_private_key` wins over `provider_key`: `rayctl up` points the head's copy of
    `auth` at the key it ships there, while the provider section keeps paths of the machine
    that ran bootstrap. A `provider_user` that contradicts `auth.ssh_user` is refused: the
    nodes would be set up for one login and reached with another."""
    fields = {str(k): str(v) for k, v in (auth or {}).items() if v is not None}
    user = fields.get("ssh_user", "")
    if provider_user and user and provider_user != user:
        raise ConfigError(
            f"provider.ssh_user {provider_user!r} differs from auth.ssh_user {user!r} (its "
            "default when unset): set the login once, as auth.ssh_user, and remove "
            "provider.ssh_user"
        )
    return {
        **fields,
        "ssh_user": user or provider_user or DEFAULT_SSH_USER,
        "ssh_private_key": fields.get("ssh_private_key") or provider_key or "",
    }

"""Cluster prerequisites on GCE: firewall rules, the SSH key, network and service account.

Idempotent: rules are found by name and only created (or their source range corrected) when
they differ. The SSH key goes into each instance's metadata, never the project's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.base import ConfigError, InstanceNotFound
from providers.gcp.clients import CALL_TIMEOUT_S, NO_RETRY, ComputeClients, OperationWaiter
from providers.gcp.config import GCPProviderConfig
from providers.gcp.errors import gcp_errors
from providers.gcp.labels import network_tag, resource_name


@dataclass(frozen=True, slots=True)
class FirewallRule:
    name: str
    description: str
    allowed: tuple[tuple[str, tuple[str, ...]], ...]  # (protocol, ports)
    source_ranges: tuple[str, ...] = ()
    source_tags: tuple[str, ...] = ()


def firewall_rules(cluster_name: str, config: GCPProviderConfig) -> list[FirewallRule]:
    """The rules a cluster needs: all traffic between its nodes, SSH from `ssh_cidr`."""
    tag = network_tag(cluster_name)
    internal_name, ssh_name = rule_names(cluster_name)
    rules = [FirewallRule(
        name=internal_name,
        description=f"rayctl cluster {cluster_name}: traffic between its nodes",
        allowed=(("tcp", ()), ("udp", ()), ("icmp", ())),
        source_tags=(tag,),
    )]
    ssh_cidr = _ssh_cidr(config)
    if ssh_cidr:
        rules.append(FirewallRule(
            name=ssh_name,
            description=f"rayctl cluster {cluster_name}: SSH from {ssh_cidr}",
            allowed=(("tcp", ("22",)),),
            source_ranges=(ssh_cidr,),
        ))
    return rules


def rule_names(cluster_name: str) -> tuple[str, str]:
    """Names of the internal and the SSH rule of a cluster."""
    return (resource_name("rayctl", cluster_name, "internal"),
            resource_name("rayctl", cluster_name, "ssh"))


def _ssh_cidr(config: GCPProviderConfig) -> str | None:
    cidr = config.ssh_cidr
    if cidr is None:
        if config.use_internal_ips:
            return None  # rayctl runs inside the VPC; the internal rule covers SSH
        raise ConfigError(
            "provider.ssh_cidr is not set: set it to the range you SSH from (e.g. "
            "203.0.113.7/32), or set use_internal_ips: true when rayctl runs inside the VPC")
    return cidr  # checked with the config (providers/ssh_range.py)


def read_public_key(value: str | None) -> str | None:
    """`ssh_public_key` is the key itself or a path to it; return the key text."""
    if value is None:
        return None
    if value.startswith(("ssh-", "ecdsa-", "sk-")):
        return value.strip()
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"provider.ssh_public_key: {value} is neither a public key nor a file")
    return path.read_text().strip()


class Bootstrapper:
    """Creates or finds what a cluster needs before its first node."""

    def __init__(self, cluster_name: str, config: GCPProviderConfig, clients: ComputeClients,
                 waiter: OperationWaiter) -> None:
        self._cluster = cluster_name
        self._config = config
        self._clients = clients
        self._waiter = waiter

    def run(self) -> dict[str, Any]:
        """Ensure the firewall rules; return the resolved provider config."""
        if self._config.service_account and self._config.service_account.create:
            roles = ", ".join(self._config.service_account.roles)
            raise ConfigError(
                "provider.service_account.create is not supported yet: create the account with "
                "`gcloud iam service-accounts create`, grant it " + roles + ", and set "
                "provider.service_account.email")
        for rule in firewall_rules(self._cluster, self._config):
            self._ensure(rule)
        resolved = self._config.model_dump(by_alias=True, exclude_none=True)
        key = read_public_key(self._config.ssh_public_key)
        if key:
            resolved["ssh_public_key"] = key
        return resolved

    def purge(self) -> None:
        """Delete the firewall rules bootstrap created (missing ones are fine)."""
        for name in rule_names(self._cluster):
            try:
                with gcp_errors(f"delete firewall rule {name}"):
                    op = self._clients.firewalls.delete_unary(
                        project=self._config.project_id, firewall=name,
                        timeout=CALL_TIMEOUT_S, retry=NO_RETRY)
                    self._waiter.global_(op)
            except InstanceNotFound:
                continue

    def _ensure(self, rule: FirewallRule) -> None:
        from google.api_core import exceptions as gexc
        from google.cloud import compute_v1

        wanted = self._firewall(rule)
        project = self._config.project_id
        with gcp_errors(f"check firewall rule {rule.name}"):
            existing = self._get(rule.name)
            if existing is None:
                try:
                    op = self._clients.firewalls.insert_unary(
                        project=project, firewall_resource=wanted, timeout=CALL_TIMEOUT_S,
                        retry=NO_RETRY)
                except gexc.Conflict:
                    return  # a concurrent `up` created it between our get and insert
            elif sorted(existing.source_ranges) != sorted(rule.source_ranges):
                patch = compute_v1.Firewall(source_ranges=list(rule.source_ranges))
                op = self._clients.firewalls.patch_unary(
                    project=project, firewall=rule.name, firewall_resource=patch,
                    timeout=CALL_TIMEOUT_S, retry=NO_RETRY)
            else:
                return
            self._waiter.global_(op)

    def _get(self, name: str) -> Any | None:
        from google.api_core import exceptions as gexc

        try:
            return self._clients.firewalls.get(project=self._config.project_id, firewall=name,
                                               timeout=CALL_TIMEOUT_S, retry=NO_RETRY)
        except gexc.NotFound:
            return None

    def _firewall(self, rule: FirewallRule) -> Any:
        from google.cloud import compute_v1

        return compute_v1.Firewall(
            name=rule.name,
            description=rule.description,
            network=network_url(self._config),
            direction="INGRESS",
            allowed=[compute_v1.Allowed(I_p_protocol=proto, ports=list(ports))
                     for proto, ports in rule.allowed],
            source_ranges=list(rule.source_ranges),
            source_tags=list(rule.source_tags),
            target_tags=[network_tag(self._cluster)],
        )


def network_url(config: GCPProviderConfig) -> str:
    if "/" in config.network:
        return config.network
    return f"projects/{config.project_id}/global/networks/{config.network}"


def subnetwork_url(config: GCPProviderConfig) -> str | None:
    if config.subnetwork is None or "/" in config.subnetwork:
        return config.subnetwork
    return f"projects/{config.project_id}/regions/{config.region}/subnetworks/{config.subnetwork}"

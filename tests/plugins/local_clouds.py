"""AWS and GCP as test plug-ins whose instances run on this machine: the shipped providers,
unchanged, talking to moto / the fake Compute API, with each instance simulated as a directory
of local processes (local_nodes.py) instead of a VM reached over SSH.

A test config names them as `provider: {type: external, module:
plugins.local_clouds.LocalAWSProvider, ...}`; their test-only keys live in their own config
models: `nodes_dir` (absolute: the head's monitor runs in another working directory) and, for
GCP, `api_endpoint` (the fake server; anonymous credentials). Terminating an instance, or the
cloud no longer listing it as running (a preempted spot VM), stops every process it started.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import field_validator

from plugins.local_nodes import LocalNodes
from providers.aws import AWSProvider
from providers.aws.config import AWSProviderConfig
from providers.base import CommandRunner, Instance
from providers.gcp import GCPProvider
from providers.gcp.config import GCPProviderConfig

MODULE = "plugins.local_clouds"


def _absolute(path: str) -> str:
    if not Path(path).expanduser().is_absolute():
        raise ValueError(f"nodes_dir {path!r} must be absolute (or start with ~): the head's "
                         "monitor runs in another working directory")
    return path


class LocalAWSConfig(AWSProviderConfig):
    """The AWS section, plus where the simulated instances live."""

    nodes_dir: str

    @field_validator("nodes_dir")
    @classmethod
    def _nodes_dir_absolute(cls, path: str) -> str:
        return _absolute(path)


class LocalGCPConfig(GCPProviderConfig):
    """The GCP section, plus where the simulated instances live and the fake server's URL."""

    nodes_dir: str
    api_endpoint: str

    @field_validator("nodes_dir")
    @classmethod
    def _nodes_dir_absolute(cls, path: str) -> str:
        return _absolute(path)


class _RunsHere:
    """What both plug-ins add to their cloud: runners from `nodes`, and an instance's end
    (terminate, or the cloud listing it as no longer running) stops its processes."""

    nodes: LocalNodes

    def _node_runner(self, instance: Instance) -> CommandRunner:
        return self.nodes.runner(instance)

    def end_machine_command(self, node_type: str) -> str | None:
        return "rayctl stop"  # these instances run here: never power off this machine

    def terminate(self, instance_ids: Sequence[str]) -> None:
        super().terminate(instance_ids)  # type: ignore[misc]
        self.nodes.stop(instance_ids)

    def list_instances(self) -> list[Instance]:
        listed: list[Instance] = super().list_instances()  # type: ignore[misc]
        self.nodes.stop_ended(listed)
        return listed


class LocalAWSProvider(_RunsHere, AWSProvider):
    """EC2 (moto) with instances that run here."""

    config_model = LocalAWSConfig

    def __init__(self, cluster_name: str, provider_config: Mapping[str, Any],
                 node_types: Mapping[str, Mapping[str, Any]], **kwargs: Any) -> None:
        super().__init__(cluster_name, provider_config, node_types,
                         command_runner_factory=self._node_runner, **kwargs)
        assert isinstance(self.config, LocalAWSConfig)
        self.nodes = LocalNodes(self.config.nodes_dir, cluster_name)


class LocalGCPProvider(_RunsHere, GCPProvider):
    """Compute Engine (the fake REST server, anonymous credentials) with instances that run
    here."""

    config_model = LocalGCPConfig

    def __init__(self, cluster_name: str, provider_config: Mapping[str, Any],
                 node_types: Mapping[str, Mapping[str, Any]], **kwargs: Any) -> None:
        from google.auth.credentials import AnonymousCredentials

        super().__init__(cluster_name, provider_config, node_types,
                         api_endpoint=str(provider_config.get("api_endpoint", "")),
                         credentials=AnonymousCredentials(),
                         command_runner_factory=self._node_runner, **kwargs)
        assert isinstance(self.config, LocalGCPConfig)
        self.nodes = LocalNodes(self.config.nodes_dir, cluster_name)


def external_section(cls: type, **section: Any) -> dict[str, Any]:
    """A `provider:` section that loads `cls` from this module as a plug-in."""
    return {"type": "external", "module": f"{MODULE}.{cls.__name__}", **section}

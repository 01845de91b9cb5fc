"""Validation of the GCP `provider:` section and of each node type's `node_config`.

Keys follow Ray's GCP schema so Ray configs carry over: `node_config` is the body of a GCE
`instances.insert` call (camelCase), plus `zones` and a list form of `machineType` for failover.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from providers.ssh_range import check_ssh_range

# The image default needs Python >= 3.11 (the setup commands install rayctl with it).
DEFAULT_SOURCE_IMAGE = "projects/debian-cloud/global/images/family/debian-12"
DEFAULT_DISK_SIZE_GB = 50
# Roles a head service account needs to launch and delete workers (documented, not granted).
HEAD_SERVICE_ACCOUNT_ROLES = ("roles/compute.admin", "roles/iam.serviceAccountUser")
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def _split_list(value: Any) -> Any:
    """Ray writes `availability_zone: us-west1-a,us-west1-b`; accept that and a YAML list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ServiceAccountConfig(BaseModel):
    """The head node's service account (workers run without one unless node_config says so)."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = None
    scopes: list[str] = Field(default_factory=lambda: [CLOUD_PLATFORM_SCOPE])
    create: bool = False
    roles: list[str] = Field(default_factory=lambda: list(HEAD_SERVICE_ACCOUNT_ROLES))


class GCPProviderConfig(BaseModel):
    """The `provider:` section of a cluster YAML for `type: gcp`."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["gcp"] = "gcp"
    project_id: str
    region: str
    availability_zone: list[str]
    ssh_cidr: str | None = None
    allow_ssh_from_anywhere: bool = False
    # The login the nodes' `ssh-keys` metadata is for. Ray's place for it is auth.ssh_user,
    # which the provider reads first; this one must not contradict it.
    ssh_user: str | None = None
    ssh_public_key: str | None = None  # the key itself or a path to a .pub file
    # The private half, when auth.ssh_private_key does not name it; else ssh_public_key
    # without ".pub" when that is a path.
    ssh_private_key: str | None = None
    network: str = "default"
    subnetwork: str | None = None
    use_internal_ips: bool = False
    service_account: ServiceAccountConfig | None = None
    cache_stopped_nodes: bool = False  # Ray key; only False is supported
    operation_timeout_s: float = 300.0

    _split_zones = field_validator("availability_zone", mode="before")(_split_list)

    @field_validator("availability_zone")
    @classmethod
    def _zones_present(cls, zones: list[str]) -> list[str]:
        if not zones:
            raise ValueError("list at least one zone, e.g. availability_zone: us-central1-a")
        return zones

    @model_validator(mode="after")
    def _ssh_range(self) -> GCPProviderConfig:
        if self.ssh_cidr is not None:
            self.ssh_cidr = check_ssh_range(self.ssh_cidr, self.allow_ssh_from_anywhere)
        return self

    @field_validator("cache_stopped_nodes")
    @classmethod
    def _no_cached_nodes(cls, value: bool) -> bool:
        if value:
            raise ValueError("cache_stopped_nodes: true is not supported by the gcp provider "
                             "(stopped nodes are deleted); remove the key")
        return value

    @model_validator(mode="after")
    def _zones_in_region(self) -> GCPProviderConfig:
        stray = [z for z in self.availability_zone if not z.startswith(self.region + "-")]
        if stray:
            raise ValueError(f"zones {stray} are not in region {self.region!r}")
        return self


class AcceleratorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    acceleratorType: str  # "nvidia-tesla-t4" or a full acceleratorTypes URL
    acceleratorCount: int = 1

    @property
    def short_type(self) -> str:
        return self.acceleratorType.rsplit("/", 1)[-1]


class SchedulingConfig(BaseModel):
    """GCE `scheduling`; other fields of the API's Scheduling message pass through."""

    model_config = ConfigDict(extra="allow")

    provisioningModel: Literal["STANDARD", "SPOT"] | None = None
    preemptible: bool | None = None
    onHostMaintenance: Literal["MIGRATE", "TERMINATE"] | None = None
    automaticRestart: bool | None = None
    instanceTerminationAction: Literal["DELETE", "STOP"] | None = None

    @property
    def is_spot(self) -> bool:
        return self.provisioningModel == "SPOT" or bool(self.preemptible)

    @model_validator(mode="after")
    def _spot_deletes(self) -> SchedulingConfig:
        # A preempted VM left STOPPED would keep billing its disks while the autoscaler
        # replaces it; rayctl never restarts stopped nodes, so only DELETE makes sense.
        if self.is_spot and self.instanceTerminationAction == "STOP":
            raise ValueError("instanceTerminationAction: STOP is not supported for spot nodes "
                             "(rayctl replaces preempted nodes); use DELETE or leave it out")
        return self


class GCPNodeConfig(BaseModel):
    """A node type's `node_config`: the instances.insert body plus `zones` and type lists.

    Keys not modelled here (networkInterfaces, serviceAccounts, minCpuPlatform, ...) pass
    through to the API body and are checked against the compute_v1 Instance schema.
    """

    model_config = ConfigDict(extra="allow")

    machineType: list[str]
    disks: list[dict[str, Any]] = Field(default_factory=list)
    guestAccelerators: list[AcceleratorConfig] = Field(default_factory=list)
    scheduling: SchedulingConfig = Field(default_factory=SchedulingConfig)
    metadata: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    zones: list[str] | None = None

    @field_validator("machineType", mode="before")
    @classmethod
    def _machine_types(cls, value: Any) -> Any:
        types = _split_list(value)
        if isinstance(types, list):
            return [str(t).rsplit("/", 1)[-1] for t in types]
        return types

    @field_validator("machineType")
    @classmethod
    def _types_present(cls, types: list[str]) -> list[str]:
        if not types:
            raise ValueError("set machineType, e.g. machineType: n1-standard-8")
        return types

    _split_node_zones = field_validator("zones", mode="before")(_split_list)

    @field_validator("scheduling", mode="before")
    @classmethod
    def _merge_scheduling(cls, value: Any) -> Any:
        # Ray's examples write scheduling as a list of one-key mappings.
        if isinstance(value, list):
            merged: dict[str, Any] = {}
            for item in value:
                merged.update(item)
            return merged
        return value

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_items(cls, value: Any) -> Any:
        # The API form is {"items": [{"key": k, "value": v}]}; a plain mapping is accepted too.
        if isinstance(value, dict) and "items" in value:
            return {item["key"]: item["value"] for item in value["items"]}
        return value

    @property
    def is_spot(self) -> bool:
        return self.scheduling.is_spot

    def passthrough(self) -> dict[str, Any]:
        """The Instance fields the user wrote that this model does not interpret."""
        return dict(self.model_extra or {})

"""The pydantic models of the AWS `provider:` section and of each type's `node_config`.

Keys follow Ray's AWS schema so Ray configs carry over; rayctl's own additions are marked.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from providers.ssh_range import check_ssh_range

# The documented default AMI lookup: the newest Canonical Ubuntu 24.04 LTS image (Python 3.12,
# which rayctl needs >= 3.11) for the instance type's architecture ({arch}: amd64 | arm64).
DEFAULT_IMAGE_OWNER = "099720109477"  # Canonical
DEFAULT_IMAGE_NAME = "ubuntu/images/hvm-ssd*/ubuntu-noble-24.04-{arch}-server-*"


class SecurityGroupConfig(BaseModel):
    """Ray's `provider.security_group`: the group's name and extra ingress rules."""

    model_config = ConfigDict(extra="forbid")

    GroupName: str | None = None
    IpPermissions: list[dict[str, Any]] = Field(default_factory=list)


class ResolvedResources(BaseModel):
    """What `bootstrap` found or created; written back into the provider config it returns so a
    provider built from that config (on the head) launches without bootstrapping again."""

    model_config = ConfigDict(extra="forbid")

    vpc_id: str = ""
    # node type -> zone -> subnet, zones in order of preference
    subnets: dict[str, dict[str, str]] = Field(default_factory=dict)
    security_group_ids: list[str] = Field(default_factory=list)
    key_name: str = ""
    ssh_private_key: str = ""  # local path of the key bootstrap created; "" when configured
    head_instance_profile_arn: str = ""
    image_ids: dict[str, str] = Field(default_factory=dict)  # node type -> AMI


class AWSProviderConfig(BaseModel):
    """The `provider:` section for `type: aws`."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["aws"] = "aws"
    region: str
    # Ray style: "us-west-2a,us-west-2b", in order of preference. Empty: every zone of the VPC.
    availability_zone: str = ""
    # Ray defaults this to true; rayctl to false, because stopped instances still bill for
    # their disks and `rayctl down` should leave nothing billed unless asked to.
    cache_stopped_nodes: bool = False
    use_internal_ips: bool = False
    security_group: SecurityGroupConfig = Field(default_factory=SecurityGroupConfig)
    # rayctl additions ----------------------------------------------------------------------
    ssh_cidr: str | None = None  # SSH ingress source; unset = no SSH ingress is opened
    allow_ssh_from_anywhere: bool = False  # consent to an ssh_cidr wider than a /8
    spot_fallback_to_on_demand: bool = False
    # The AMI's login. Ray's place for it is auth.ssh_user, which the provider reads first;
    # this older spelling is kept for configs that use it and must not contradict auth.
    ssh_user: str | None = None
    vpc_id: str | None = None  # default: the region's default VPC
    key_dir: str | None = None  # where a created key is saved; default ~/.rayctl/keys
    image_name: str = DEFAULT_IMAGE_NAME
    image_owner: str = DEFAULT_IMAGE_OWNER
    resolved: ResolvedResources | None = None  # filled by bootstrap
    warnings: list[str] = Field(default_factory=list)  # filled by bootstrap, for `up` to print

    def zones(self) -> list[str]:
        return [z.strip() for z in self.availability_zone.split(",") if z.strip()]

    @model_validator(mode="after")
    def _ssh_range(self) -> AWSProviderConfig:
        if self.ssh_cidr is not None:
            self.ssh_cidr = check_ssh_range(self.ssh_cidr, self.allow_ssh_from_anywhere)
        return self


class AWSNodeConfig(BaseModel):
    """A node type's `node_config`: the keyword arguments of EC2 RunInstances, as in Ray.

    The keys rayctl interprets are fields; any other RunInstances argument passes through.
    """

    model_config = ConfigDict(extra="allow")

    InstanceType: str | list[str]
    ImageId: str | None = None
    KeyName: str | None = None
    SubnetIds: list[str] = Field(default_factory=list)
    SecurityGroupIds: list[str] = Field(default_factory=list)
    IamInstanceProfile: dict[str, str] | None = None
    InstanceMarketOptions: dict[str, Any] | None = None
    UserData: str | None = None
    TagSpecifications: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("InstanceType")
    @classmethod
    def _non_empty(cls, value: str | list[str]) -> str | list[str]:
        if not value:
            raise ValueError("InstanceType must name at least one EC2 instance type")
        return value

    def instance_types(self) -> list[str]:
        return [self.InstanceType] if isinstance(self.InstanceType, str) else self.InstanceType

    def is_spot(self) -> bool:
        options = self.InstanceMarketOptions or {}
        return options.get("MarketType", "spot") == "spot" if options else False

    def passthrough(self) -> dict[str, Any]:
        """RunInstances arguments rayctl does not interpret (BlockDeviceMappings, ...)."""
        return dict(self.model_extra or {})

"""The head node's IAM role and instance profile: the least-privilege policy, its creation
(idempotent) and its deletion by `purge` (only when bootstrap's tag says we created it).
"""

from __future__ import annotations

import json
import re
from functools import partial
from typing import Any

from providers.aws.errors import Retrier, error_code
from providers.base import TAG_CLUSTER, ProviderError

BOOTSTRAP_TAG = "rayctl-bootstrap"  # value: the cluster name; marks what purge may delete
POLICY_NAME = "rayctl-head-autoscaler"

_ASSUME_ROLE = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def role_name(cluster_name: str) -> str:
    """IAM names allow [A-Za-z0-9+=,.@_-] and at most 64 characters."""
    return re.sub(r"[^\w+=,.@-]", "-", f"rayctl-head-{cluster_name}")[:64]


def head_policy(cluster_name: str) -> dict[str, Any]:
    """The EC2 calls the autoscaler on the head makes, scoped by the cluster tag where EC2
    can check one (Describe* cannot be scoped; RunInstances checks the tags it is asked to
    write, so the head can only create instances labelled with its own cluster)."""
    tag_is_cluster = {"StringEquals": {f"aws:ResourceTag/{TAG_CLUSTER}": cluster_name}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Observe",
                "Effect": "Allow",
                "Action": ["ec2:DescribeInstances", "ec2:DescribeInstanceTypes"],
                "Resource": "*",
            },
            {
                "Sid": "LaunchOnlyClusterTagged",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": ["arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:*:*:volume/*"],
                "Condition": {"StringEquals": {f"aws:RequestTag/{TAG_CLUSTER}": cluster_name}},
            },
            {
                "Sid": "LaunchFrom",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": [
                    "arn:aws:ec2:*::image/*",
                    "arn:aws:ec2:*:*:subnet/*",
                    "arn:aws:ec2:*:*:network-interface/*",
                    "arn:aws:ec2:*:*:security-group/*",
                    "arn:aws:ec2:*:*:key-pair/*",
                    "arn:aws:ec2:*:*:spot-instances-request/*",
                ],
            },
            {
                "Sid": "TagAtLaunch",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": ["arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:*:*:volume/*"],
                "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}},
            },
            {
                "Sid": "ManageOwnInstances",
                "Effect": "Allow",
                "Action": [
                    "ec2:TerminateInstances",
                    "ec2:StopInstances",
                    "ec2:StartInstances",
                    "ec2:CreateTags",
                ],
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": tag_is_cluster,
            },
        ],
    }


def _tags(cluster_name: str) -> list[dict[str, str]]:
    return [
        {"Key": TAG_CLUSTER, "Value": cluster_name},
        {"Key": BOOTSTRAP_TAG, "Value": cluster_name},
    ]


def _get(call: Retrier, fn: Any, **kwargs: Any) -> Any:
    """The IAM get_* response, or None when the entity does not exist."""
    try:
        return call(lambda: fn(**kwargs))
    except ProviderError as exc:
        if error_code(exc.__cause__) == "NoSuchEntity":
            return None
        raise


def ensure_head_profile(iam: Any, call: Retrier, cluster_name: str) -> str:
    """Find or create the head role + instance profile; returns the profile ARN."""
    name = role_name(cluster_name)
    if _get(call, iam.get_role, RoleName=name) is None:
        call(
            lambda: iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(_ASSUME_ROLE),
                Description=f"rayctl head node of cluster {cluster_name}",
                Tags=_tags(cluster_name),
            )
        )
    # put_role_policy overwrites: a second bootstrap leaves one policy, updated if ours changed.
    document = json.dumps(head_policy(cluster_name))
    call(
        lambda: iam.put_role_policy(RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=document)
    )
    found = _get(call, iam.get_instance_profile, InstanceProfileName=name)
    profile = found["InstanceProfile"] if found else None
    if profile is None:
        profile = call(
            lambda: iam.create_instance_profile(InstanceProfileName=name, Tags=_tags(cluster_name))
        )["InstanceProfile"]
    if not any(role["RoleName"] == name for role in profile.get("Roles", [])):
        call(lambda: iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name))
    return str(profile["Arn"])


def delete_head_profile(iam: Any, call: Retrier, cluster_name: str) -> bool:
    """Delete the head role and profile if bootstrap created them; True when deleted."""
    name = role_name(cluster_name)
    role = _get(call, iam.get_role, RoleName=name)
    if role is None:
        return False
    tags = {t["Key"]: t["Value"] for t in role["Role"].get("Tags", [])}
    if tags.get(BOOTSTRAP_TAG) != cluster_name:
        return False  # someone else's role with our name: never delete it
    if _get(call, iam.get_instance_profile, InstanceProfileName=name) is not None:
        call(lambda: iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=name))
        call(lambda: iam.delete_instance_profile(InstanceProfileName=name))
    for policy in call(lambda: iam.list_role_policies(RoleName=name))["PolicyNames"]:
        call(partial(iam.delete_role_policy, RoleName=name, PolicyName=policy))
    call(lambda: iam.delete_role(RoleName=name))
    return True

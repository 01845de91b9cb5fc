"""Bad values are refused where they enter, with one line naming the option, the value and the
fix, before anything runs (issue 13, item 4). Used to be accepted: num_cpus=-1 (18 of 20
sleeping tasks ran at once on a 2-CPU node), num_gpus=-1, memory=-5, num_cpus=nan."""

from __future__ import annotations

import math

import pytest

import runtime as rt
from autoscaler.sdk import _bundles
from runtime.resources import task_shape

BAD_AMOUNTS = [-1, -0.5, math.nan, math.inf, -math.inf, 1e300, True, "2", None.__class__]


def fn() -> int:
    return 1


class Cls:
    pass


@pytest.mark.parametrize("value", BAD_AMOUNTS)
@pytest.mark.parametrize("option", ["num_cpus", "num_gpus", "memory"])
def test_a_bad_amount_is_refused_at_decoration_and_in_options(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option) as caught:
        rt.remote(**{option: value})(fn)
    text = str(caught.value)
    assert "\n" not in text and repr(value) in text
    with pytest.raises(ValueError, match=option):
        rt.remote(fn).options(**{option: value})
    with pytest.raises(ValueError, match=option):
        rt.remote(**{option: value})(Cls)


@pytest.mark.parametrize(
    "resources, named",
    [({"acc": -1}, "acc"), ({"acc": math.nan}, "acc"), ({"": 1}, "''"), ({3: 1}, "3"),
     ("acc", "dict")],
)
def test_bad_custom_resources_are_refused(resources: object, named: str) -> None:
    with pytest.raises(ValueError, match="resources") as caught:
        rt.remote(resources=resources)(fn)
    assert named in str(caught.value)


@pytest.mark.parametrize("option", ["max_retries"])
@pytest.mark.parametrize("value", [-2, 1.5, math.inf, "3", True])
def test_bad_retry_counts_are_refused(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{option} must be a whole number >= 0, or -1"):
        rt.remote(**{option: value})(fn)


@pytest.mark.parametrize("option", ["max_restarts", "max_task_retries"])
def test_bad_actor_restart_counts_are_refused(option: str) -> None:
    with pytest.raises(ValueError, match=option):
        rt.remote(**{option: -5})(Cls)


def test_good_values_still_make_the_shapes_they_did() -> None:
    assert task_shape(0.5, 1, 1e9, {"acc": 2}, default_cpus=1) == {
        "CPU": 0.5, "GPU": 1.0, "memory": 1e9, "acc": 2.0
    }
    assert task_shape(None, None, None, None, default_cpus=1) == {"CPU": 1.0}
    assert task_shape(0, 0, 0, {"acc": 0}, default_cpus=1) == {}
    rt.remote(num_cpus=0, max_retries=-1)(fn)
    rt.remote(max_restarts=-1, max_task_retries=-1)(Cls)


@pytest.mark.parametrize(
    "num_cpus, bundles, named",
    [(math.inf, None, "num_cpus"), (math.nan, None, "num_cpus"), (-1, None, "num_cpus"),
     (10**12, None, "num_cpus"), (None, [{"CPU": math.inf}], "bundles[0]['CPU']"),
     (None, [{"GPU": -1}], "bundles[0]['GPU']"), (None, [{}], "bundles[0]"),
     (None, [{"CPU": 1}] * 100_001, "at most 100,000")],
)
def test_request_resources_refuses_bad_values(
    num_cpus: object, bundles: object, named: str
) -> None:
    with pytest.raises(ValueError) as caught:
        _bundles(num_cpus, bundles)  # type: ignore[arg-type]
    assert named in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("wide", ["0.0.0.0/0", "1.2.3.4/0", "0::/0", "0.0.0.0/1", "2001:db8::/16"])
def test_aws_refuses_ssh_wider_than_a_slash_8_without_consent(wide: str) -> None:
    """AWS accepted `ssh_cidr: 0.0.0.0/0` silently."""
    from pydantic import ValidationError

    from providers.aws.config import AWSProviderConfig

    with pytest.raises(ValidationError, match="allow_ssh_from_anywhere: true"):
        AWSProviderConfig(region="us-east-1", ssh_cidr=wide)
    allowed = AWSProviderConfig(region="us-east-1", ssh_cidr=wide, allow_ssh_from_anywhere=True)
    assert allowed.ssh_cidr is not None and allowed.ssh_cidr.endswith(wide.rsplit("/", 1)[1])
    narrow = AWSProviderConfig(region="us-east-1", ssh_cidr="203.0.113.7/32")
    assert narrow.ssh_cidr == "203.0.113.7/32"
    with pytest.raises(ValidationError, match="is not a network"):
        AWSProviderConfig(region="us-east-1", ssh_cidr="my laptop")

"""`head_lost_timeout_minutes` in the cluster YAML: validated, and handed with the provider's
end-machine command to every worker `rayctl up` installs (what `rayctl start` then reads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autoscaler.config import ClusterConfigError, validate_config
from autoscaler.installer import ConfigNodeInstaller
from providers.base import Offering
from providers.local import LocalProvider


def _config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "cluster_name": "headloss",
        "provider": {"type": "local", "state_dir": str(tmp_path)},
        "available_node_types": {"head": {"resources": {}}, "cpu": {"resources": {"CPU": 1}}},
        "head_node_type": "head",
        **overrides,
    }


def test_the_default_is_ten_minutes(tmp_path: Path) -> None:
    config = validate_config(_config(tmp_path))
    assert config.head_lost_timeout_s == 600.0


@pytest.mark.parametrize("bad", [-1, 0, float("inf"), float("nan"), "10", True])
def test_bad_timeouts_get_one_line_naming_the_key(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ClusterConfigError) as caught:
        validate_config(_config(tmp_path, head_lost_timeout_minutes=bad))
    [error] = caught.value.errors
    assert error.startswith("head_lost_timeout_minutes: must be a finite number > 0")


def test_workers_get_the_timeout_and_the_providers_end_command(tmp_path: Path) -> None:
    dump = 'printf "%s\\n" "$RAYCTL_HEAD_LOST_TIMEOUT_S" "$RAYCTL_END_MACHINE_COMMAND" > env.txt'
    config = validate_config(
        _config(tmp_path, head_lost_timeout_minutes=0.5, worker_start_ray_commands=[dump])
    )
    provider = LocalProvider("headloss", {"state_dir": str(tmp_path)}, {"cpu": {}})
    instance = provider.launch("cpu", Offering("local"), 1, "r1")[0]
    try:
        result = ConfigNodeInstaller(
            provider, config, "127.0.0.1:6379", "", str(tmp_path / "logs"), {"cpu": {"CPU": 1.0}}
        ).install(instance)
        assert result.ok, result.detail
        written = (provider.slot_dir(instance.id) / "env.txt").read_text().splitlines()
        assert written == ["30", "rayctl stop"]  # a local slot stops its services only
    finally:
        provider.terminate([instance.id])


@pytest.mark.parametrize(
    "flag, env", [(["--gcs-lost-timeout-s", "-1"], {}), ([], {"RAYCTL_HEAD_LOST_TIMEOUT_S": "inf"})]
)
def test_rayctl_start_refuses_a_bad_timeout_before_starting_anything(
    tmp_path: Path, flag: list[str], env: dict[str, str]
) -> None:
    from typer.testing import CliRunner

    from autoscaler.cli import app

    args = ["start", "--address", "127.0.0.1:1", "--temp-dir", str(tmp_path), *flag]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2
    assert "--gcs-lost-timeout-s must be a finite number of seconds > 0" in result.output
    assert not any(tmp_path.iterdir())  # no session was made

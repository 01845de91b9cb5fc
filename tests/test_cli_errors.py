"""Every `rayctl` command, given a config file that is missing, invalid or not YAML, or a valid
config of a cluster that was never started, ends with one `error:` line naming the problem and a
non-zero exit, never a traceback. Through typer's runner; nothing is started."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ssh_server import closed_port
from typer.testing import CliRunner, Result

from autoscaler.cli import app

NAME = "never-started"

# Each command that reads a cluster config, with the other arguments it needs; {config} is
# replaced by the file under test.
CONFIG_COMMANDS: dict[str, list[str]] = {
    "up": ["up", "{config}", "-y"],
    "down": ["down", "{config}", "-y"],
    "exec": ["exec", "{config}", "true"],
    "attach": ["attach", "{config}"],
    "submit": ["submit", "{config}", "{script}", "--", "arg"],
    "rsync-up": ["rsync-up", "{config}", "{script}", "remote/job.py"],
    "rsync-down": ["rsync-down", "{config}", "remote/job.py", "{tmp}/pulled"],
    "get-head-ip": ["get-head-ip", "{config}"],
    "monitor": ["monitor", "{config}"],
    "status": ["status", "{config}"],
    "start": ["start", "--head", "--autoscaling-config", "{config}", "--temp-dir", "{tmp}/rt"],
}
# `up` creates an unknown cluster, `down` of one has nothing to do (see its own test), `start`
# reads the config only to validate it.
UNKNOWN_CLUSTER_COMMANDS = sorted(set(CONFIG_COMMANDS) - {"up", "down", "start"})


@dataclass
class Files:
    tmp: Path
    missing: Path
    invalid: Path  # one misspelt key
    not_yaml: Path
    unknown: Path  # valid, for a cluster nobody started
    script: Path

    def argv(self, command: str, config: Path) -> list[str]:
        values = {"config": str(config), "script": str(self.script), "tmp": str(self.tmp)}
        return [arg.format(**values) for arg in CONFIG_COMMANDS[command]]


def valid_config(tmp: Path) -> dict[str, object]:
    return {
        "cluster_name": NAME,
        "provider": {"type": "local", "state_dir": str(tmp / "slots")},
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 0}},
            "cpu": {"resources": {"CPU": 1}, "max_workers": 1},
        },
    }


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Files:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("RAYCTL_ADDRESS", "RAYCTL_TOKEN_FILE", "RAYCTL_HEAD_ADDRESS",
                 "RAYCTL_LAUNCHER_DIR", "RAYCTL_LOCAL_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(yaml.safe_dump({**valid_config(tmp_path), "max_worker": 3}))
    not_yaml = tmp_path / "not-yaml.yaml"
    not_yaml.write_text("cluster_name: [unclosed\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump(valid_config(tmp_path)))
    script = tmp_path / "job.py"
    script.write_text("print('never runs')\n")
    return Files(tmp_path, tmp_path / "missing.yaml", invalid, not_yaml, unknown, script)


def invoke(argv: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, argv, env=env)


def the_error(result: Result, *, only_line: bool = True) -> str:
    """The single `error:` line of a failed command (checked: non-zero exit, no traceback, no
    exception other than typer's exit)."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.output
    if only_line:  # `up` shows its progress steps before the error
        assert lines == errors, result.output
    return errors[0]


@pytest.mark.parametrize("command", sorted(CONFIG_COMMANDS))
def test_a_missing_config_file_is_named(files: Files, command: str) -> None:
    error = the_error(invoke(files.argv(command, files.missing)), only_line=command != "up")
    assert str(files.missing) in error and "cannot read" in error
    assert "No such file" in error


@pytest.mark.parametrize("command", sorted(CONFIG_COMMANDS))
def test_an_invalid_config_names_the_key_and_the_fix(files: Files, command: str) -> None:
    error = the_error(invoke(files.argv(command, files.invalid)), only_line=command != "up")
    assert str(files.invalid) in error
    assert "max_worker: unknown key; did you mean `max_workers`?" in error
    assert not (files.tmp / "slots").exists() and not (files.tmp / "rt").exists()


@pytest.mark.parametrize("command", sorted(CONFIG_COMMANDS))
def test_a_file_that_is_not_yaml_says_where(files: Files, command: str) -> None:
    error = the_error(invoke(files.argv(command, files.not_yaml)), only_line=command != "up")
    assert str(files.not_yaml) in error and "not valid YAML" in error and "line 1" in error


def test_several_config_problems_are_listed_one_per_line(files: Files) -> None:
    raw = {**valid_config(files.tmp), "max_worker": 3, "head_node_type": "haed"}
    files.invalid.write_text(yaml.safe_dump(raw))
    result = invoke(files.argv("exec", files.invalid))
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.splitlines()
    assert lines[0] == f"error: invalid cluster config {files.invalid} (2 errors):"
    assert any("max_worker" in line for line in lines[1:])
    assert any("haed" in line for line in lines[1:])


@pytest.mark.parametrize("command", UNKNOWN_CLUSTER_COMMANDS)
def test_a_cluster_never_started_says_to_run_up(files: Files, command: str) -> None:
    error = the_error(invoke(files.argv(command, files.unknown)))
    assert f"cluster {NAME!r} has no head node" in error and "rayctl up" in error
    assert not (files.tmp / "pulled").exists()


def test_down_of_a_cluster_never_started_has_nothing_to_remove(files: Files) -> None:
    """Not an error: `down` is idempotent (a second `down` must succeed, as in Ray)."""
    result = invoke(files.argv("down", files.unknown))
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert result.output.strip() == f"Cluster {NAME!r}: nothing to remove."


def test_start_joining_without_a_token_says_how_to_give_one(files: Files) -> None:
    argv = ["start", "--address", f"127.0.0.1:{closed_port()}", "--temp-dir", f"{files.tmp}/rt"]
    error = the_error(invoke(argv))
    assert "no cluster token" in error and "--token-file" in error


def test_start_joining_with_a_missing_token_file_names_it(files: Files) -> None:
    token = files.tmp / "no-such-token"
    argv = ["start", "--address", f"127.0.0.1:{closed_port()}", "--token-file", str(token),
            "--temp-dir", f"{files.tmp}/rt"]
    error = the_error(invoke(argv))
    assert str(token) in error


@pytest.mark.slow  # the raylet tries the address for 30 s before giving up
def test_start_joining_a_cluster_nobody_runs_fails_naming_the_address(files: Files) -> None:
    token = files.tmp / "token"
    token.write_text("not-a-real-token\n")
    address = f"127.0.0.1:{closed_port()}"
    temp_dir = f"{files.tmp}/rt"
    try:
        argv = ["start", "--address", address, "--token-file", str(token), "--temp-dir", temp_dir]
        error = the_error(invoke(argv))
        assert f"could not join the cluster at {address}" in error
    finally:
        invoke(["stop", "--temp-dir", temp_dir, "--grace-period", "1"])


def test_status_of_an_address_nobody_serves_fails_naming_it(files: Files) -> None:
    token = files.tmp / "token"
    token.write_text("not-a-real-token\n")
    address = f"127.0.0.1:{closed_port()}"
    result = invoke(["status", "--address", address], env={"RAYCTL_TOKEN_FILE": str(token)})
    error = the_error(result)
    assert f"cannot reach the cluster at {address}" in error


def test_stop_takes_no_config(files: Files) -> None:
    result = invoke(["stop", str(files.unknown)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "unexpected extra argument" in result.output


def test_stop_with_nothing_started_says_so(files: Files) -> None:
    """Not an error: `down` and the on-prem release run `rayctl stop` on hosts that may have
    nothing running."""
    result = invoke(["stop", "--temp-dir", str(files.tmp / "rt")])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "No rayctl processes were running."

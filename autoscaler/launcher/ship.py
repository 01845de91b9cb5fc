"""What `up` ships to the head beyond the user's file mounts: the resolved config as YAML (where
the head start commands' `--autoscaling-config` points), the SSH key the head's provider needs
to reach workers (the one this machine's provider reaches the head with), and, unless the head's
commands run on this machine, a wheel of this rayctl, which setup installs (DESIGN.md 6).

The config the head gets is rewritten for the head's point of view: its file mounts name the
head's copies and `auth.ssh_private_key` the shipped key, which cloud providers read first, so
the monitor can set workers up from there.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from autoscaler.config import BOOTSTRAP_CONFIG_NAME, ClusterConfig
from autoscaler.launcher.head import LaunchError, is_local
from autoscaler.launcher.updater import UpdatePlan
from providers.base import CommandRunner

KEY_REMOTE = "~/rayctl_bootstrap_key.pem"
WHEEL_DIR_REMOTE = "~/rayctl_wheels"
_CONFIG_FLAG = re.compile(r"--autoscaling-config(?:=|\s+)(\S+)")


@dataclass(frozen=True, slots=True)
class Shipment:
    mounts: tuple[tuple[str, str], ...]  # (remote path, local path)
    setup_prefix: tuple[str, ...]  # run before the config's own setup commands

    def apply(self, plan: UpdatePlan) -> UpdatePlan:
        return replace(
            plan,
            file_mounts=(*plan.file_mounts, *self.mounts),
            setup_commands=(*self.setup_prefix, *plan.setup_commands),
        )


# --- decisions (pure) ----------------------------------------------------------------------------


def config_targets(config: ClusterConfig) -> list[str]:
    """Where the head start commands read the autoscaling config (else the default name)."""
    found: list[str] = []
    for command in config.head_start_ray_commands:
        for match in _CONFIG_FLAG.finditer(command):
            path = match.group(1).strip("'\"")
            if path not in found:
                found.append(path)
    return found or [BOOTSTRAP_CONFIG_NAME]


def wheel_install_command(remote_wheel: str) -> str:
    """pip into the login user's site; Debian/Ubuntu's PEP 668 guard needs its override."""
    base = "python3 -m pip install --user --upgrade --no-warn-script-location -q"
    return f"{base} {remote_wheel} || {base} --break-system-packages {remote_wheel}"


def head_config_dict(
    config: ClusterConfig, *, key_remote: str | None, wheel_remote: str | None
) -> dict[str, Any]:
    """The config as the head's monitor should read it. Local clusters share this machine,
    so their config ships unchanged."""
    data = config.to_dict()
    if is_local(config):
        return data
    # The head syncs workers from its own copies, which live at the same remote paths.
    mounts = {remote: remote for remote in config.file_mounts}
    if wheel_remote:
        mounts[wheel_remote] = wheel_remote
        data["setup_commands"] = [wheel_install_command(wheel_remote), *config.setup_commands]
    data["file_mounts"] = mounts
    if key_remote:
        data["auth"] = {**data.get("auth", {}), "ssh_private_key": key_remote}
    return data


# --- acting ----------------------------------------------------------------------------------------


def prepare_shipment(config: ClusterConfig, local_dir: Path, runner: CommandRunner) -> Shipment:
    """The files for the head that `runner` (the provider's runner of the head) reaches."""
    local_dir.mkdir(parents=True, exist_ok=True)
    mounts: list[tuple[str, str]] = []
    setup: list[str] = []
    key_remote = wheel_remote = None
    key = shipped_key(runner)
    if key is not None:
        key_remote = KEY_REMOTE
        mounts.append((KEY_REMOTE, str(key)))
        setup.append(f"chmod 600 {KEY_REMOTE}")
    if not runner.on_this_machine:  # else this rayctl is installed there already
        wheel = build_wheel(local_dir / "wheel")
        wheel_remote = f"{WHEEL_DIR_REMOTE}/{wheel.name}"
        mounts.append((wheel_remote, str(wheel)))
        setup.append(wheel_install_command(wheel_remote))
    shipped = local_dir / "head_config.yaml"
    data = head_config_dict(config, key_remote=key_remote, wheel_remote=wheel_remote)
    shipped.write_text(yaml.safe_dump(data, sort_keys=False))
    mounts += [(target, str(shipped)) for target in config_targets(config)]
    return Shipment(tuple(mounts), tuple(setup))


def shipped_key(runner: CommandRunner) -> Path | None:
    """The private key the provider reaches the head with (the user's `auth.ssh_private_key`,
    or the key its bootstrap created), which the head's provider needs for the workers.
    None for a runner that is not one of providers.ssh's, or that uses the agent's keys (the
    head cannot use those: the docs say so)."""
    if runner.on_this_machine:
        return None
    from providers.ssh import AsyncSSHRunner, OpenSSHRunner  # loaded with the runner already

    if not isinstance(runner, AsyncSSHRunner | OpenSSHRunner) or not runner.target.key_path:
        return None
    configured = runner.target.key_path
    path = Path(configured).expanduser()
    if not path.is_file():
        raise LaunchError(
            f"the SSH key {configured} does not exist on this machine; fix auth.ssh_private_key"
        )
    return path


def stage_source(root: Path, stage: Path) -> Path:
    """A clean copy of what the build reads: pyproject.toml, the readme, the packages.
    setuptools builds inside the tree it is given and keeps its build/ directory there, whose
    leftovers (a module deleted since) would ship in the wheel; a fresh copy per build also
    lets two builds run at once and leaves the checkout untouched."""
    project = tomllib.loads((root / "pyproject.toml").read_text())
    readme = project.get("project", {}).get("readme")
    readme = readme.get("file") if isinstance(readme, dict) else readme
    find = project.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
    patterns = [str(p).split(".")[0] for p in find.get("include", [])]
    stage.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in", readme):
        if name and (root / name).is_file():
            shutil.copy2(root / name, stage / name)
    for folder in sorted(root.iterdir()):
        wanted = (any(fnmatch.fnmatch(folder.name, p) for p in patterns) if patterns
                  else (folder / "__init__.py").is_file())
        if folder.is_dir() and wanted:
            shutil.copytree(folder, stage / folder.name, ignore=_NOT_SOURCE)
    return stage


_NOT_SOURCE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def build_wheel(out_dir: Path) -> Path:
    """A wheel of the installed rayctl (from its source tree), for the nodes to install."""
    root = repo_root()
    if not (root / "pyproject.toml").is_file():
        raise LaunchError(
            f"cannot build a rayctl wheel for the nodes: no source tree at {root} "
            "(install rayctl from a git checkout, `pip install -e .`)"
        )
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="rayctl-wheel-src-") as stage:
        source = stage_source(root, Path(stage) / "src")
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out_dir),
                str(source)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    wheels = sorted(out_dir.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-10:])
        raise LaunchError(f"building the rayctl wheel failed ({shlex.join(argv)}):\n{tail}")
    return wheels[0]

"""The wheel `rayctl up` ships to cloud heads (autoscaler/launcher/ship.py `build_wheel`, which the
default setup installs with pip): built from this checkout, installed into a fresh venv, run from
outside the checkout; and built without what a stale setuptools build/ directory holds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from autoscaler.launcher import ship as launcher_ship

PACKAGES = ("runtime", "providers", "autoscaler")


def package_files(root: Path) -> set[str]:
    return {str(f.relative_to(root)) for package in PACKAGES for f in (root / package).rglob("*")
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"}


def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    """Built by `build_wheel` from this checkout (~4 s here), installed with pip into a fresh
    venv; run from outside the checkout, the venv's copy is what imports and what `rayctl` is."""
    wheel = launcher_ship.build_wheel(tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.split("/")[0] in PACKAGES}
    checkout = launcher_ship.repo_root()
    assert shipped == package_files(checkout)  # every module and data file, nothing stale
    assert "autoscaler/defaults/local.yaml" in shipped  # `rayctl up` with no file

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    python = venv / "bin" / "python"
    # The dependencies (grpcio, pydantic, ...) are not what is tested and are not downloaded:
    # a .pth line puts the checkout venv's site-packages after the new venv's own. A plain path
    # line runs no .pth file there, so the checkout's editable install stays out of the way.
    ask = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = subprocess.run([str(python), "-c", ask], capture_output=True, text=True,
                          check=True).stdout.strip()
    (Path(site) / "checkout_venv_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         str(wheel)], capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    elsewhere = tmp_path / "elsewhere"  # no checkout in the cwd or on PYTHONPATH
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HOME"] = str(tmp_path / "home")
    helped = subprocess.run([str(venv / "bin" / "rayctl"), "--help"], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stdout + helped.stderr
    for command in ("attach", "monitor", "rsync-up", "get-head-ip"):
        assert command in helped.stdout, helped.stdout
    where = textwrap.dedent("""\
        import autoscaler, providers, runtime
        from autoscaler.launcher.up import load_cluster
        from autoscaler.config import default_config_path
        print(runtime.__file__, providers.__file__, autoscaler.__file__, default_config_path())
        print(load_cluster(None).provider_type)
    """)
    ran = subprocess.run([str(python), "-c", where], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    paths, provider = ran.stdout.splitlines()
    assert all(path.startswith(site) for path in paths.split()), paths
    assert provider == "local"


def test_the_wheel_leaves_out_what_a_stale_build_directory_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """setuptools packs its build/ directory: a module deleted from the source since an earlier
    build would ship. `build_wheel` builds from a fresh copy, leaving the tree untouched."""
    tree = tmp_path / "tree"
    tree.mkdir()
    checkout = launcher_ship.repo_root()
    shutil.copy2(checkout / "pyproject.toml", tree)
    shutil.copy2(checkout / "README.md", tree)
    for package in PACKAGES:
        shutil.copytree(checkout / package, tree / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    stale = tree / "build" / "lib" / "autoscaler" / "deleted_since.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("raise ImportError('deleted from the source')\n")
    before = sorted(str(p) for p in tree.rglob("*"))
    monkeypatch.setattr(launcher_ship, "repo_root", lambda: tree)
    wheel = launcher_ship.build_wheel(tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as archive:
        assert "autoscaler/deleted_since.py" not in archive.namelist()
        assert "autoscaler/launcher/ship.py" in archive.namelist()
    assert sorted(str(p) for p in tree.rglob("*")) == before  # nothing written into the tree

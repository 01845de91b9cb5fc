"""runtime_env through a real cluster: env_vars, working_dir (shipped through the GCS KV and
unpacked on the node), and a pip requirement that cannot install failing the task with pip's
message instead of hanging."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def env_cluster() -> Iterator[object]:
    import runtime as rt

    temp_dir = tempfile.mkdtemp(prefix="rayctl-env-")
    old = os.environ.get("RAYCTL_PIP_EXTRA_ARGS")
    os.environ["RAYCTL_PIP_EXTRA_ARGS"] = "--no-index"  # fail fast, never reach an index
    try:
        rt.init(num_cpus=2, _temp_dir=temp_dir, runtime_env={"env_vars": {"JOB_LEVEL": "job"}})
        yield rt
    finally:
        rt.shutdown()
        if old is None:
            os.environ.pop("RAYCTL_PIP_EXTRA_ARGS", None)
        else:
            os.environ["RAYCTL_PIP_EXTRA_ARGS"] = old
        from runtime.session import all_sessions, stop_session

        for session in all_sessions(temp_dir):
            stop_session(session, grace_s=2)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_env_vars_job_and_task_level(env_cluster) -> None:
    rt = env_cluster

    @rt.remote
    def read(name):
        return os.environ.get(name)

    assert rt.get(read.remote("JOB_LEVEL")) == "job"
    with_task_env = read.options(runtime_env={"env_vars": {"TASK_LEVEL": "task"}})
    assert rt.get(with_task_env.remote("TASK_LEVEL")) == "task"
    assert rt.get(with_task_env.remote("JOB_LEVEL")) == "job", "task env_vars merge with the job's"


def test_working_dir_is_shipped_and_importable(env_cluster, tmp_path) -> None:
    rt = env_cluster
    project = tmp_path / "project"
    project.mkdir()
    (project / "helper_mod_xyz.py").write_text("def answer():\n    return 42\n")
    (project / "data.txt").write_text("hello")

    @rt.remote(runtime_env={"working_dir": str(project)})
    def use_project():
        import helper_mod_xyz

        with open("data.txt") as f:
            return helper_mod_xyz.answer(), f.read(), os.getcwd() != str(project)

    assert rt.get(use_project.remote(), timeout=60) == (42, "hello", True)


def test_bad_pip_requirement_fails_the_task_with_pips_message(env_cluster) -> None:
    rt = env_cluster

    @rt.remote(runtime_env={"pip": ["this-package-does-not-exist-xyz==1.0"]}, max_retries=0)
    def never():
        return 1

    with pytest.raises(Exception, match="this-package-does-not-exist-xyz") as info:
        rt.get(never.remote(), timeout=120)
    assert "No matching distribution" in str(info.value) or "pip" in str(info.value).lower()


def test_bad_runtime_env_key_fails_at_options(env_cluster) -> None:
    rt = env_cluster

    @rt.remote
    def f():
        return 1

    with pytest.raises(Exception, match="env_var"):
        f.options(runtime_env={"env_var": {"A": "1"}})

"""runtime_env without a cluster: validation messages, deterministic packaging and upload-once,
merge rules, and the node cache (unpack, PYTHONPATH/cwd, locking, pip virtualenvs from a local
wheel, pip failures and timeouts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.runtime_env import (
    KvPackageStore,
    NodeEnvCache,
    RuntimeEnv,
    RuntimeEnvError,
    WorkerSetup,
    merge,
    package,
    validate,
    zip_directory,
)


class MemoryStore:
    """The cluster KV as a dict, counting uploads and downloads."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.uploads = 0
        self.downloads = 0
        self.lock = threading.Lock()

    def upload(self, uri: str, data: bytes) -> None:
        self.uploads += 1
        self.data[uri] = data

    def exists(self, uri: str) -> bool:
        return uri in self.data

    def download(self, uri: str) -> bytes:
        with self.lock:
            self.downloads += 1
        return self.data[uri]


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# -- validation ---------------------------------------------------------------------------------


def test_unknown_key_suggests_the_nearest_and_lists_supported() -> None:
    with pytest.raises(RuntimeEnvError) as err:
        validate({"env_var": {"A": "1"}})
    msg = str(err.value)
    assert "'env_var'" in msg and "did you mean 'env_vars'" in msg
    assert "env_vars, working_dir, py_modules, pip" in msg


def test_ray_key_rayctl_does_not_implement_says_what_to_use() -> None:
    with pytest.raises(RuntimeEnvError, match="conda.*not supported.*use 'pip'"):
        validate({"conda": {"dependencies": ["numpy"]}})


@pytest.mark.parametrize(
    ("env_vars", "fragment"),
    [({"A": 1}, "['A'] is int 1"), ({3: "x"}, "bad name 3"), (["A=1"], "must be a dict")],
)
def test_env_vars_must_map_str_to_str(env_vars: object, fragment: str) -> None:
    with pytest.raises(RuntimeEnvError) as err:
        validate({"env_vars": env_vars})
    assert fragment in str(err.value)


def test_missing_working_dir_and_py_module_are_named(tmp_path: Path) -> None:
    with pytest.raises(RuntimeEnvError, match="'working_dir'.*nope.*not an existing directory"):
        validate({"working_dir": str(tmp_path / "nope")})
    with pytest.raises(RuntimeEnvError, match="must be a list"):
        validate({"py_modules": str(tmp_path)})
    with pytest.raises(RuntimeEnvError, match="remote URIs are not supported"):
        validate({"working_dir": "s3://bucket/code.zip"})


def test_bad_requirement_is_named_and_good_ones_are_normalized() -> None:
    with pytest.raises(RuntimeEnvError, match=r"requirement 'numpy>=>1' is not valid"):
        validate({"pip": ["requests>=2", "numpy>=>1"]})
    assert validate({"pip": {"packages": ["zlib-x>=1", "abc == 1.0"]}}) == {
        "pip": ["abc==1.0", "zlib-x>=1"]
    }
    with pytest.raises(RuntimeEnvError, match="only 'packages'"):
        validate({"pip": {"packages": ["a"], "pip_version": "==23"}})


def test_validate_resolves_paths_and_accepts_uploaded_uris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "code").mkdir()
    monkeypatch.chdir(tmp_path)
    uri = "gcs://_rayctl_pkg_0123456789abcdef.zip"
    out = validate({"working_dir": "code", "py_modules": [uri], "env_vars": None})
    assert out == {"working_dir": str(tmp_path / "code"), "py_modules": [uri]}


# -- packaging ----------------------------------------------------------------------------------


def test_same_tree_gives_same_uri_and_a_changed_file_a_new_one(tmp_path: Path) -> None:
    files = {"main.py": "print(1)\n", "pkg/__init__.py": "", "pkg/data.txt": "x" * 1000}
    a = make_tree(tmp_path / "a", files)
    b = make_tree(tmp_path / "b", files)
    for path in b.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))  # other mtimes must not change the package
    store = MemoryStore()
    uri_a = package({"working_dir": str(a)}, store.upload, store.exists).working_dir_uri
    uri_b = package({"working_dir": str(b)}, store.upload, store.exists).working_dir_uri
    assert uri_a == uri_b and uri_a is not None and uri_a.startswith("gcs://_rayctl_pkg_")
    (b / "pkg" / "data.txt").write_text("y" * 1000)
    assert package({"working_dir": str(b)}, store.upload, store.exists).working_dir_uri != uri_a


def test_package_skips_caches_vcs_and_virtualenvs(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "proj",
        {
            "app.py": "",
            "__pycache__/app.cpython-311.pyc": "",
            ".git/HEAD": "ref",
            ".venv/bin/python": "",
            "myenv/pyvenv.cfg": "home = /usr",
            "data/big.csv": "1,2",
            "sub/mod.py": "",
        },
    )
    data = zip_directory(str(root), excludes=("data",))
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as zf:
        assert zf.namelist() == ["app.py", "sub/mod.py"]


def test_package_over_the_limit_is_refused_with_the_culprit(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "proj", {"app.py": "", "weights.bin": "w" * 5000})
    store = MemoryStore()
    with pytest.raises(RuntimeEnvError, match=r"weights.bin.*over the .* limit.*excludes"):
        package({"working_dir": str(root)}, store.upload, store.exists, max_package_bytes=4000)
    assert store.uploads == 0
    env = package(
        {"working_dir": str(root), "excludes": ["*.bin"]},
        store.upload,
        store.exists,
        max_package_bytes=4000,
    )
    assert env.working_dir_uri and store.uploads == 1


def test_each_package_is_uploaded_once(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "proj", {"app.py": "A = 1\n"})
    mod = make_tree(tmp_path / "lib" / "mymod", {"__init__.py": "B = 2\n"})
    store = MemoryStore()
    raw = {"working_dir": str(root), "py_modules": [str(mod)]}
    first = package(raw, store.upload, store.exists)
    second = package(raw, store.upload, store.exists)
    assert first == second and store.uploads == 2
    assert len(first.py_module_uris) == 1


def test_kv_store_splits_large_packages_into_chunks() -> None:
    kv: dict[str, bytes] = {}
    store = KvPackageStore(kv.__setitem__, kv.get)
    data = os.urandom(2 * 1024 * 1024 + 17)
    uri = "gcs://_rayctl_pkg_0123456789abcdef.zip"
    assert not store.exists(uri)
    store.upload(uri, data)
    assert store.exists(uri) and store.download(uri) == data
    assert max(len(v) for v in kv.values()) <= 1024 * 1024 and len(kv) == 4
    kv[f"{uri}#1"] = b"garbage"
    with pytest.raises(RuntimeEnvError, match="corrupt"):
        store.download(uri)


def test_kv_store_over_gcs_uses_the_runtime_env_namespace() -> None:
    from runtime.protocol import gcs_pb2

    table: dict[tuple[str, str], bytes] = {}

    def gcs_call(method: str, request: gcs_pb2.KvRequest) -> gcs_pb2.KvReply:
        """The GCS KV semantics (runtime/gcs/server.py) over a dict."""
        key = (request.ns, request.key)
        if method == "KvPut":
            table[key] = request.value
            return gcs_pb2.KvReply(written=True)
        assert method == "KvGet"
        return gcs_pb2.KvReply(found=key in table, value=table.get(key, b""))

    store = KvPackageStore.over_gcs(gcs_call)
    uri = "gcs://_rayctl_pkg_0123456789abcdef.zip"
    store.upload(uri, b"zipbytes")
    assert store.exists(uri) and store.download(uri) == b"zipbytes"
    assert {ns for ns, _ in table} == {"runtime_env"}


# -- merge and keys -----------------------------------------------------------------------------


def test_task_env_overrides_job_fields_and_merges_env_vars() -> None:
    job = {"env_vars": {"A": "job", "B": "job"}, "working_dir": "/job", "pip": ["x"]}
    task = {"env_vars": {"B": "task", "C": "task"}, "pip": ["y"]}
    assert merge(job, task) == {
        "env_vars": {"A": "job", "B": "task", "C": "task"},
        "working_dir": "/job",
        "pip": ["y"],
    }
    assert merge(None, task) == task and merge(job, None) == job
    assert job["env_vars"] == {"A": "job", "B": "job"}  # inputs untouched


def test_key_is_stable_and_empty_env_has_the_default_key() -> None:
    a = RuntimeEnv(env_vars={"A": "1", "B": "2"}, pip=("x",))
    b = RuntimeEnv(env_vars={"B": "2", "A": "1"}, pip=("x",))
    assert a.key() == b.key() == RuntimeEnv.from_dict(a.to_dict()).key()
    assert a.key() != RuntimeEnv(env_vars={"A": "1"}).key()
    assert RuntimeEnv().is_empty() and RuntimeEnv().key() == ""
    assert len({a, b}) == 1


# -- node cache: packages -----------------------------------------------------------------------


def test_prepared_worker_runs_in_working_dir_and_imports_py_modules(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "proj", {"helper.py": "H = 'helper'\n", "data.txt": "hello"})
    (root / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (root / "run.sh").chmod(0o755)
    mod = make_tree(tmp_path / "lib" / "mymod", {"__init__.py": "M = 'mymod'\n"})
    store = MemoryStore()
    env = package(
        {
            "working_dir": str(root),
            "py_modules": [str(mod)],
            "env_vars": {"GREETING": "hi ${USER_X}"},
        },
        store.upload,
        store.exists,
    )
    setup = NodeEnvCache(str(tmp_path / "cache"), store.download).prepare(env)
    assert setup.python == sys.executable and setup.cwd and setup.cwd != str(root)
    code = "import helper, mymod, os; print(helper.H, mymod.M, open('data.txt').read(), os.environ['GREETING'])"
    worker_env = setup.apply({**os.environ, "USER_X": "there"})
    out = subprocess.run(
        [setup.python, "-c", code],
        cwd=setup.cwd,
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.split() == ["helper", "mymod", "hello", "hi", "there"]
    assert (
        subprocess.run([os.path.join(setup.cwd, "run.sh")], capture_output=True, text=True).stdout
        == "ran\n"
    )


def test_worker_setup_puts_package_paths_before_existing_pythonpath() -> None:
    setup = WorkerSetup(python="py", env={"PYTHONPATH": "/pkg"}, cwd=None)
    assert setup.apply({"PYTHONPATH": "/base"})["PYTHONPATH"] == f"/pkg{os.pathsep}/base"
    assert setup.apply({})["PYTHONPATH"] == "/pkg"


def test_concurrent_prepare_of_one_env_unpacks_once(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "proj", {f"m{i}.py": f"X = {i}\n" for i in range(50)})
    store = MemoryStore()
    env = package({"working_dir": str(root)}, store.upload, store.exists)
    slow_download_started = threading.Event()

    def slow_download(uri: str) -> bytes:
        slow_download_started.set()
        time.sleep(0.2)  # widen the window so the second preparer really meets the lock
        return store.download(uri)

    cache = NodeEnvCache(str(tmp_path / "cache"), slow_download)
    barrier = threading.Barrier(2)
    results: list[WorkerSetup] = []

    def run() -> None:
        barrier.wait()
        results.append(cache.prepare(env))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 2 and results[0] == results[1]
    assert store.downloads == 1
    assert sorted(os.listdir(results[0].cwd or "")) == sorted(f"m{i}.py" for i in range(50))
    assert os.listdir(tmp_path / "cache" / "pkgs") == [os.path.basename(results[0].cwd or "")]


def test_a_package_with_the_wrong_content_is_rejected(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "proj", {"a.py": ""})
    store = MemoryStore()
    env = package({"working_dir": str(root)}, store.upload, store.exists)
    cache = NodeEnvCache(str(tmp_path / "cache"), lambda uri: zip_directory(str(tmp_path)))
    with pytest.raises(RuntimeEnvError, match="wrong content hash"):
        cache.prepare(env)
    assert os.listdir(tmp_path / "cache" / "pkgs") == []


# -- node cache: pip ----------------------------------------------------------------------------


def build_wheel(dest: Path, name: str, version: str, body: str) -> Path:
    """A minimal pure-python wheel, written by hand so the test needs no build backend."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": body,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{p},,\n" for p in files) + f"{dist}/RECORD,,\n"
    path = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for rel, text in files.items():
            zf.writestr(rel, text)
    return path


@pytest.fixture(scope="module")
def pip_cache(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[NodeEnvCache, WorkerSetup]]:
    """One virtualenv for the module (building one takes about a second)."""
    root = tmp_path_factory.mktemp("pip")
    wheels = root / "wheels"
    wheels.mkdir()
    build_wheel(wheels, "rayctl_testpkg", "1.0", "VALUE = 'from the wheel'\n")
    args = ("--no-index", "--find-links", str(wheels))
    cache = NodeEnvCache(
        str(root / "cache"), MemoryStore().download, extra_pip_args=args, pip_timeout_s=120
    )
    setup = cache.prepare(RuntimeEnv(pip=("rayctl_testpkg==1.0",)))
    try:
        yield cache, setup
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_pip_env_has_the_package_and_rayctl_itself(
    pip_cache: tuple[NodeEnvCache, WorkerSetup],
) -> None:
    _, setup = pip_cache
    assert setup.python != sys.executable
    code = "import rayctl_testpkg, runtime.worker, cloudpickle; print(rayctl_testpkg.VALUE)"
    out = subprocess.run(
        [setup.python, "-c", code],
        env=setup.apply(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "from the wheel"
    # the host interpreter does not see it: the env is isolated
    assert (
        subprocess.run(
            [sys.executable, "-c", "import rayctl_testpkg"], capture_output=True
        ).returncode
        != 0
    )


def test_pip_env_is_built_once_per_node(pip_cache: tuple[NodeEnvCache, WorkerSetup]) -> None:
    cache, setup = pip_cache
    venv = os.path.dirname(os.path.dirname(setup.python))
    ready = os.path.join(venv, ".rayctl_ready")
    before = os.stat(ready).st_mtime_ns
    # a fresh cache object over the same dir (a restarted raylet) reuses the env
    again = NodeEnvCache(cache.cache_dir, cache.download, extra_pip_args=cache.extra_pip_args)
    assert (
        again.prepare(RuntimeEnv(pip=("rayctl_testpkg==1.0",), env_vars={"A": "1"})).python
        == setup.python
    )
    assert os.stat(ready).st_mtime_ns == before
    assert os.listdir(os.path.dirname(venv)) == [os.path.basename(venv)]


def test_bad_requirement_fails_with_pips_message(
    pip_cache: tuple[NodeEnvCache, WorkerSetup],
) -> None:
    cache, _ = pip_cache
    env = RuntimeEnv(pip=("this-package-does-not-exist-xyz==1.0",))
    started = time.monotonic()
    with pytest.raises(RuntimeEnvError) as err:
        cache.prepare(env)
    assert time.monotonic() - started < 30
    msg = str(err.value)
    assert "this-package-does-not-exist-xyz" in msg
    assert "No matching distribution found" in msg  # pip's own words
    assert len(os.listdir(os.path.join(cache.cache_dir, "pip"))) == 1  # the broken env was removed


def test_pip_timeout_stops_the_build_with_a_clear_error(tmp_path: Path) -> None:
    cache = NodeEnvCache(str(tmp_path / "cache"), MemoryStore().download, pip_timeout_s=0.05)
    with pytest.raises(RuntimeEnvError, match=r"within 0.05 s \(pip timeout\)"):
        cache.prepare(RuntimeEnv(pip=("anything==1.0",)))
    assert os.listdir(tmp_path / "cache" / "pip") == []

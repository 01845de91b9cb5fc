"""Tests for the shared-memory object files (runtime.shm) and the node's store manager
(runtime.object_store): zero-copy round trips, cross-process reads, crash safety, capacity, and
a full store as a user of a real cluster meets it (ObjectStoreFullError)."""

from __future__ import annotations

import hashlib
import mmap
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from polling import wait_for

from runtime.exceptions import ObjectStoreFullError, RuntimeBaseError
from runtime.object_store import ObjectStore
from runtime.shm import (
    ObjectFormatError,
    ObjectNotFoundError,
    encoded_size,
    object_path,
    preallocate,
    read_object,
    shm_root,
    write_object,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFIX = f"rayctl-test-objstore-{os.getpid()}-"


@pytest.fixture(scope="module", autouse=True)
def nothing_left_in_shm() -> Iterator[None]:
    yield
    leftovers = [name for name in os.listdir(shm_root()) if name.startswith(PREFIX)]
    assert leftovers == [], f"test files left in {shm_root()}: {leftovers}"


@pytest.fixture
def shm_dir() -> Iterator[str]:
    path = os.path.join(shm_root(), PREFIX + uuid.uuid4().hex[:8])
    os.mkdir(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ObjectStore]:
    shm = os.path.join(shm_root(), PREFIX + uuid.uuid4().hex[:8])
    object_store = ObjectStore(
        shm, capacity_bytes=_size_of(1000) * 3, spill_dir=str(tmp_path / "spill")
    )
    try:
        yield object_store
    finally:
        object_store.close()
        shutil.rmtree(shm, ignore_errors=True)


def _payload(object_id: str, n: int = 1000) -> bytes:
    return hashlib.sha256(object_id.encode()).digest() * (n // 32) + b"x" * (n % 32)


def _size_of(n: int) -> int:
    return encoded_size(b"meta", [b"\0" * n])


def _put(store: ObjectStore, object_id: str, n: int = 1000, *, primary: bool = True) -> None:
    size = write_object(store.shm_dir, object_id, b"meta", [_payload(object_id, n)])
    store.add(object_id, size, primary=primary)


def _content(path: str) -> bytes:
    meta, buffers = read_object(os.path.dirname(path), os.path.basename(path))
    return bytes(meta) + b"".join(bytes(b) for b in buffers)


def _where(store: ObjectStore, object_id: str) -> set[str]:
    places = {"shm": store.shm_dir, "spill": store.spill_dir}
    return {k for k, d in places.items() if os.path.exists(object_path(d, object_id))}


# -- runtime.shm ----------------------------------------------------------------------------------


def test_bytes_round_trip(shm_dir: str) -> None:
    data = os.urandom(100_000)
    size = write_object(shm_dir, "obj1", b"some meta", [data])

    meta, buffers = read_object(shm_dir, "obj1")

    assert (
        size == encoded_size(b"some meta", [data]) == os.path.getsize(object_path(shm_dir, "obj1"))
    )
    assert bytes(meta) == b"some meta"
    assert [bytes(b) for b in buffers] == [data]
    assert buffers[0].readonly


def test_numpy_round_trip_is_zero_copy_and_read_only(shm_dir: str) -> None:
    original = np.arange(1_000_000, dtype=np.float64).reshape(1000, 1000)
    oob: list[pickle.PickleBuffer] = []
    meta = pickle.dumps(original, protocol=5, buffer_callback=oob.append)
    write_object(shm_dir, "arr", meta, oob)

    meta_view, buffers = read_object(shm_dir, "arr")
    loaded = pickle.loads(meta_view, buffers=buffers)
    del meta_view, buffers

    np.testing.assert_array_equal(loaded, original)
    assert not loaded.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        loaded[0, 0] = 1.0
    base = loaded
    while not isinstance(base, mmap.mmap):  # ndarray -> memoryview(s) -> the mmap itself
        base = base.base if isinstance(base, np.ndarray) else base.obj
    mapped = np.frombuffer(base, dtype=np.uint8)
    assert np.shares_memory(loaded, mapped)
    assert loaded.ctypes.data % 64 == 0


def test_many_buffers_round_trip_with_alignment(shm_dir: str) -> None:
    rng = np.random.default_rng(7)
    ints = [rng.integers(0, 1 << 30, size=n) for n in range(1, 60, 3)]
    value: dict[str, object] = {
        "empty": np.zeros(0, dtype=np.int8),
        "fortran": np.asfortranarray(rng.random((37, 11))),
        "ints": ints,
        "bytes": pickle.PickleBuffer(bytearray(b"abc" * 777)),
        "plain": {"in": "band"},
    }
    oob: list[pickle.PickleBuffer] = []
    meta = pickle.dumps(value, protocol=5, buffer_callback=oob.append)
    assert len(oob) > 20
    write_object(shm_dir, "many", meta, oob)

    meta_view, buffers = read_object(shm_dir, "many")
    loaded = pickle.loads(meta_view, buffers=buffers)

    assert len(buffers) == len(oob)
    assert all(b.obj is buffers[0].obj for b in buffers)  # one map, views into it
    np.testing.assert_array_equal(loaded["fortran"], value["fortran"])
    assert loaded["fortran"].flags.f_contiguous
    for got, want in zip(loaded["ints"], ints, strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.ctypes.data % 64 == 0
    assert bytes(loaded["bytes"]) == b"abc" * 777
    assert loaded["empty"].shape == (0,) and loaded["plain"] == {"in": "band"}


def test_reader_in_another_process_sees_exact_bytes(shm_dir: str) -> None:
    meta, data = os.urandom(5000), [os.urandom(3_000_000), b"", os.urandom(12345)]
    write_object(shm_dir, "shared", meta, data)
    reader = (
        "import hashlib, sys\n"
        "from runtime.shm import read_object\n"
        "meta, bufs = read_object(sys.argv[1], 'shared')\n"
        "h = hashlib.sha256(meta)\n"
        "[h.update(b) for b in bufs]\n"
        "print(len(bufs), h.hexdigest())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", reader, shm_dir],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()

    expected = hashlib.sha256(meta + b"".join(data)).hexdigest()
    assert out == ["3", expected]


def test_missing_and_foreign_files_are_reported(shm_dir: str) -> None:
    with pytest.raises(ObjectNotFoundError, match="object nope is not in"):
        read_object(shm_dir, "nope")
    Path(object_path(shm_dir, "junk")).write_bytes(b"not an object at all, just text")
    with pytest.raises(ObjectFormatError, match="not a version 1 object"):
        read_object(shm_dir, "junk")
    with pytest.raises(ValueError, match="invalid object id"):
        object_path(shm_dir, "../escape")


def test_failed_write_leaves_no_tmp_and_no_object(shm_dir: str) -> None:
    not_contiguous = memoryview(b"abcdefgh")[::2]
    with pytest.raises(BufferError):
        write_object(shm_dir, "broken", not_contiguous, [b"data"])  # type: ignore[arg-type]
    assert os.listdir(shm_dir) == []


def test_writer_killed_mid_write_never_exposes_a_partial_object(
    shm_dir: str, tmp_path: Path
) -> None:
    writer = (
        "import sys\n"
        "from runtime.shm import write_object\n"
        "write_object(sys.argv[1], 'big', b'meta', [bytearray(512 * 1024 * 1024)])\n"
    )
    store = ObjectStore(shm_dir, capacity_bytes=1 << 30, spill_dir=str(tmp_path / "spill"))
    for _attempt in range(5):  # retried only if the write finished before the kill landed
        proc = subprocess.Popen(
            [sys.executable, "-c", writer, shm_dir], cwd=REPO_ROOT, stderr=subprocess.PIPE
        )
        try:
            tmp_seen = _wait_for_tmp(shm_dir, proc)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            _, stderr = proc.communicate(timeout=30)
        sealed = os.path.exists(object_path(shm_dir, "big"))
        if tmp_seen and not sealed:
            break
        assert sealed, f"the writer failed on its own: {stderr.decode()}"
        os.unlink(object_path(shm_dir, "big"))
    else:
        pytest.fail("the writer always finished before it could be killed")

    with pytest.raises(ObjectNotFoundError):
        read_object(shm_dir, "big")
    assert store.abort_partial() == 1
    assert os.listdir(shm_dir) == []


def _wait_for_tmp(directory: str, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        if any(name.endswith(".tmp") for name in os.listdir(directory)):
            return True
        time.sleep(0.0005)
    return False


def test_abort_partial_spares_live_writers(store: ObjectStore) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    dead_pid = int(dead.stdout)
    for name in ("a.tmp", f"b.{dead_pid}.ab12.tmp", f"c.{os.getpid()}.cd34.tmp"):
        Path(store.shm_dir, name).write_bytes(b"partial")
    Path(store.spill_dir, f"d.{dead_pid}.ef56.tmp").write_bytes(b"partial")

    assert store.abort_partial() == 3
    assert sorted(os.listdir(store.shm_dir)) == [f"c.{os.getpid()}.cd34.tmp"]
    assert os.listdir(store.spill_dir) == []


# -- runtime.object_store -------------------------------------------------------------------------


def test_over_capacity_evicts_secondary_copies_before_spilling_primaries(
    store: ObjectStore,
) -> None:
    _put(store, "p1")  # least recently used, but primary
    _put(store, "s1", primary=False)
    _put(store, "p2")
    _put(store, "p3")  # 4 objects in room for 3: the secondary copy goes

    assert not store.contains("s1") and _where(store, "s1") == set()
    assert store.stats().num_evicted == 1 and store.stats().num_spilled == 0

    _put(store, "p4")  # no secondary left: the LRU primary is spilled

    assert _where(store, "p1") == {"spill"}
    assert store.contains("p1")
    stats = store.stats()
    assert (stats.num_objects, stats.num_spilled, stats.spilled_bytes) == (4, 1, _size_of(1000))
    assert stats.used_bytes == 3 * _size_of(1000) <= stats.capacity_bytes


def test_get_path_restores_spilled_objects_with_identical_content(store: ObjectStore) -> None:
    for oid in ("p1", "p2", "p3", "p4"):
        _put(store, oid)
    assert _where(store, "p1") == {"spill"}

    path = store.get_path("p1")  # restoring p1 spills p2, now the least recently used

    assert path == object_path(store.shm_dir, "p1")
    assert _content(path) == b"meta" + _payload("p1")
    assert _where(store, "p2") == {"spill"}
    assert _content(store.get_path("p2")) == b"meta" + _payload("p2")
    assert store.stats().used_bytes <= store.capacity_bytes


def test_get_path_marks_recently_used(store: ObjectStore) -> None:
    for oid in ("p1", "p2", "p3"):
        _put(store, oid)
    store.get_path("p1")
    _put(store, "p4")
    assert _where(store, "p1") == {"shm"}
    assert _where(store, "p2") == {"spill"}


def test_pinned_objects_are_neither_evicted_nor_spilled(store: ObjectStore) -> None:
    _put(store, "s1", primary=False)
    _put(store, "p1")
    _put(store, "p2")
    store.pin("s1")
    store.pin("p1")
    _put(store, "p3")
    assert _where(store, "s1") == _where(store, "p1") == {"shm"}
    assert _where(store, "p2") == {"spill"}
    store.unpin("s1")
    _put(store, "p4")
    assert not store.contains("s1")


def test_object_larger_than_capacity_is_spilled_at_once_and_stays_readable(
    store: ObjectStore,
) -> None:
    _put(store, "p1")
    _put(store, "huge", n=10_000)

    assert _where(store, "huge") == {"spill"}
    assert _where(store, "p1") == {"shm"}  # nothing else was moved for it
    path = store.get_path("huge")
    assert path == object_path(store.spill_dir, "huge")
    assert _content(path) == b"meta" + _payload("huge", 10_000)
    assert store.stats().used_bytes == _size_of(1000)


def test_delete_removes_shm_and_spilled_files(store: ObjectStore) -> None:
    for oid in ("p1", "p2", "p3", "p4"):
        _put(store, oid)
    store.get_path("p1")  # p1 is now both in shm and (kept) on disk
    assert _where(store, "p1") == {"shm", "spill"}

    store.delete("p1")
    store.delete("p2")  # spilled only
    store.delete("never-added")

    assert _where(store, "p1") == _where(store, "p2") == set()
    assert not store.contains("p1")
    with pytest.raises(ObjectNotFoundError):
        store.get_path("p1")
    assert store.stats().num_objects == 2


def test_mapped_object_stays_readable_after_delete(store: ObjectStore) -> None:
    oob: list[pickle.PickleBuffer] = []
    meta = pickle.dumps(np.arange(200), protocol=5, buffer_callback=oob.append)
    store.add("arr", write_object(store.shm_dir, "arr", meta, oob))
    meta_view, buffers = read_object(store.shm_dir, "arr")
    loaded = pickle.loads(meta_view, buffers=buffers)

    store.delete("arr")

    assert _where(store, "arr") == set()
    np.testing.assert_array_equal(loaded, np.arange(200))


def test_add_requires_a_sealed_file(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match="write it with runtime.shm.write_object"):
        store.add("ghost", 100)
    assert not store.contains("ghost")


def test_failed_spill_raises_object_store_full_with_the_fix(store: ObjectStore) -> None:
    for oid in ("p1", "p2", "p3"):
        _put(store, oid)
    shutil.rmtree(store.spill_dir)  # the disk side is gone
    with pytest.raises(ObjectStoreFullError) as info:
        _put(store, "p4")
    message = str(info.value)
    assert "p4" in message and "p1" in message and str(_size_of(1000)) in message
    assert str(store.capacity_bytes) in message and "object_store_memory" in message
    assert isinstance(info.value, RuntimeBaseError), "one ObjectStoreFullError, in the runtime's tree"
    # the refused object is forgotten (its writer's put failed: nobody would ever free it)
    assert not store.contains("p4") and _where(store, "p4") == set()
    assert store.stats().used_bytes == 3 * _size_of(1000)
    # it travels intact from the raylet to the process that put it
    assert str(pickle.loads(pickle.dumps(info.value))) == message
    # the objects already there stay readable
    assert _content(store.get_path("p1")) == b"meta" + _payload("p1")


def test_close_leaves_nothing(tmp_path: Path) -> None:
    shm = os.path.join(shm_root(), PREFIX + "close")
    store = ObjectStore(shm, capacity_bytes=_size_of(1000) * 2, spill_dir=str(tmp_path / "s"))
    for oid in ("p1", "p2", "p3"):
        _put(store, oid)
    Path(shm, "left.tmp").write_bytes(b"x")
    assert os.stat(shm).st_mode & 0o777 == 0o700

    store.close()
    store.close()

    assert not os.path.exists(shm) and not os.path.exists(store.spill_dir)


# -- spare pages ----------------------------------------------------------------------------------

MiB = 1024 * 1024


@pytest.fixture
def spare_store(tmp_path: Path) -> Iterator[ObjectStore]:
    """A 300 MiB store whose spares are allocated at once (the raylet does it in a thread)."""
    shm = os.path.join(shm_root(), PREFIX + uuid.uuid4().hex[:8])

    def make_spare(path: str, size: int) -> None:
        preallocate(path, size)
        object_store.spare_ready(path, size, True)

    object_store = ObjectStore(shm, 300 * MiB, str(tmp_path / "spill"), make_spare=make_spare)
    try:
        yield object_store
    finally:
        object_store.close()
        shutil.rmtree(shm, ignore_errors=True)


def _spares(store: ObjectStore) -> list[int]:
    return sorted(os.path.getsize(os.path.join(store.shm_dir, name))
                  for name in os.listdir(store.shm_dir) if name.startswith(".spare-"))


def test_a_freed_fetched_copy_leaves_a_spare_for_a_fetch_of_about_its_size(
    spare_store: ObjectStore,
) -> None:
    _put(spare_store, "copy", 70 * MiB, primary=False)
    spare_store.delete("copy")
    assert _spares(spare_store) == [_size_of(70 * MiB)]
    assert spare_store.stats().used_bytes == 0  # a spare holds no object
    assert spare_store.take_spare(_size_of(70 * MiB) + 1) is None  # too small
    assert spare_store.take_spare(30 * MiB) is None  # more than twice the size: not worth it
    path = spare_store.take_spare(60 * MiB)
    assert path is not None and os.path.getsize(path) == _size_of(70 * MiB)
    assert spare_store.take_spare(60 * MiB) is None  # taken once
    os.unlink(path)


def test_primaries_and_small_copies_leave_no_spare(spare_store: ObjectStore) -> None:
    _put(spare_store, "mine", 70 * MiB, primary=True)
    _put(spare_store, "small", 1 * MiB, primary=False)
    spare_store.delete("mine")
    spare_store.delete("small")
    assert _spares(spare_store) == []


def test_spares_give_way_to_objects_and_stay_within_half(spare_store: ObjectStore) -> None:
    for oid in ("c1", "c2", "c3"):
        _put(spare_store, oid, 70 * MiB, primary=False)
    for oid in ("c1", "c2", "c3"):
        spare_store.delete(oid)
    assert _spares(spare_store) == [_size_of(70 * MiB)] * 2  # a third would pass 150 MiB
    for oid in ("p1", "p2", "p3"):
        _put(spare_store, oid, 80 * MiB)  # 240 MiB + the spares' 140 > 300: the spares go
    assert _spares(spare_store) == []
    assert spare_store.stats().num_spilled == 0


# -- a full store, as a user meets it ---------------------------------------------------------------


@pytest.fixture
def small_store_cluster(temp_dir: str) -> Iterator[tuple[object, str]]:
    """A private one-node cluster with a 4 MiB store; yields (runtime, its spill directory)."""
    import runtime as rt

    rt.init(num_cpus=1, object_store_memory=4 * MiB, _temp_dir=temp_dir)
    try:
        (spill_dir,) = Path(temp_dir).glob("session_*/spill/*")
        yield rt, str(spill_dir)
    finally:
        rt.shutdown()


def test_a_put_or_a_return_that_cannot_fit_raises_object_store_full(
    small_store_cluster: tuple[object, str],
) -> None:
    rt, spill_dir = small_store_cluster
    held = [rt.put(np.full(MiB // 8, i, dtype=np.int64)) for i in range(3)]  # 3 of the 4 MiB
    shutil.rmtree(spill_dir)  # the disk side is gone: nothing can make room now

    with pytest.raises(ObjectStoreFullError, match="object_store_memory") as info:
        rt.put(np.zeros(2 * MiB, dtype=np.uint8))
    assert str(4 * MiB) in str(info.value), "the message says how full the store is"

    @rt.remote
    def big() -> np.ndarray:
        return np.zeros(2 * MiB, dtype=np.uint8)

    with pytest.raises(ObjectStoreFullError, match="object_store_memory"):
        rt.get(big.remote(), timeout=30)
    assert [int(a[0]) for a in rt.get(held)] == [0, 1, 2], "what was stored stays readable"

    del held  # once references are freed, the same put fits
    ref = wait_for(lambda: _put_or_none(rt, 2 * MiB), 10, "a put to fit after the frees")
    assert rt.get(ref).nbytes == 2 * MiB


def _put_or_none(rt: object, nbytes: int) -> object:
    try:
        return rt.put(np.zeros(nbytes, dtype=np.uint8))  # type: ignore[attr-defined]
    except ObjectStoreFullError:
        return None

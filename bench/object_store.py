"""Micro benchmark of the node object store: put (pickle 5 + write_object) and get (read_object +
pickle.loads, zero copy) of a 100 MB numpy array, full read-through, spill and restore; with
``--write-methods``, the alternatives runtime.shm.write_object was chosen against.

Run: ``python bench/object_store.py [--mb 100] [--repeat 5] [--write-methods]``
"""

from __future__ import annotations

import argparse
import mmap
import os
import pickle
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable

import numpy as np

from runtime.object_store import ObjectStore
from runtime.shm import read_object, shm_root, write_object


def _median_s(fn: Callable[[int], None], repeat: int) -> float:
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _gbps(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 1e9:6.2f} GB/s ({seconds * 1e3:7.2f} ms)"


def bench_store(array: np.ndarray, repeat: int, shm_dir: str, spill_dir: str) -> None:
    nbytes = array.nbytes

    def put(i: int) -> None:
        oob: list[pickle.PickleBuffer] = []
        meta = pickle.dumps(array, protocol=5, buffer_callback=oob.append)
        write_object(shm_dir, f"put{i}", meta, oob)

    def get(i: int) -> None:
        meta, buffers = read_object(shm_dir, f"put{i}")
        pickle.loads(meta, buffers=buffers)

    def get_and_sum(i: int) -> None:
        meta, buffers = read_object(shm_dir, f"put{i}")
        pickle.loads(meta, buffers=buffers).sum()

    print(
        f"put  {nbytes >> 20} MiB numpy (pickle 5 + write_object): {_gbps(nbytes, _median_s(put, repeat))}"
    )
    print(f"get  zero copy (read_object + loads):        {_median_s(get, repeat) * 1e3:8.3f} ms")
    print(
        f"get + sum() over every byte:                 {_gbps(nbytes, _median_s(get_and_sum, repeat))}"
    )
    store = ObjectStore(shm_dir, capacity_bytes=nbytes * 2, spill_dir=spill_dir)
    size = os.path.getsize(os.path.join(shm_dir, "put0"))
    store.add("put0", size)
    store.add("put1", size)
    start = time.perf_counter()
    store.add("put2", size)  # spills put0 (shm -> disk copy + unlink)
    print(f"spill one object to {spill_dir}: {_gbps(size, time.perf_counter() - start)}")
    start = time.perf_counter()
    store.get_path("put0")  # restores put0 (spilling put1)
    print(f"restore (+ spill another):          {_gbps(size, time.perf_counter() - start)}")
    store.close()


def bench_write_methods(array: np.ndarray, repeat: int, shm_dir: str) -> None:
    """Fresh tmpfs pages, one 100 MB buffer, the ways write_object could have been written."""
    src = array.data.cast("B")
    n = src.nbytes

    def via_mmap(
        flags: int, madvise: int | None = None, fallocate: bool = False
    ) -> Callable[[int], None]:
        def write(i: int) -> None:
            path = os.path.join(shm_dir, f"m{flags}-{madvise}-{fallocate}-{i}")
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            os.posix_fallocate(fd, 0, n) if fallocate else os.ftruncate(fd, n)
            mapped = mmap.mmap(fd, n, flags=flags)
            if madvise is not None:
                mapped.madvise(madvise)
            mapped[:] = src
            mapped.close()
            os.close(fd)
            os.unlink(path)

        return write

    def via_pwrite(i: int) -> None:
        path = os.path.join(shm_dir, f"p{i}")
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.ftruncate(fd, n)
        os.pwrite(fd, src, 0)
        os.close(fd)
        os.unlink(path)

    methods: dict[str, Callable[[int], None]] = {
        "ftruncate + mmap + slice copy": via_mmap(mmap.MAP_SHARED),
        "  ... with MAP_POPULATE": via_mmap(mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)),
        "posix_fallocate + mmap": via_mmap(mmap.MAP_SHARED, fallocate=True),
        "ftruncate + pwrite (chosen)": via_pwrite,
    }
    if hasattr(mmap, "MADV_POPULATE_WRITE"):
        methods["  ... mmap + MADV_POPULATE_WRITE"] = via_mmap(
            mmap.MAP_SHARED, madvise=mmap.MADV_POPULATE_WRITE
        )
    for name, fn in methods.items():
        print(f"write {name:34s} {_gbps(n, _median_s(fn, repeat))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write-methods", action="store_true")
    args = parser.parse_args()
    array = np.random.default_rng(0).integers(0, 255, args.mb * 1024 * 1024, dtype=np.uint8)
    shm_dir = os.path.join(shm_root(), f"rayctl-bench-{uuid.uuid4().hex[:8]}")
    spill_dir = tempfile.mkdtemp(prefix="rayctl-bench-spill-")
    os.makedirs(shm_dir, mode=0o700)
    try:
        bench_store(array, args.repeat, shm_dir, spill_dir)
        if args.write_methods:
            os.makedirs(shm_dir, mode=0o700, exist_ok=True)
            bench_write_methods(array, args.repeat, shm_dir)
    finally:
        shutil.rmtree(shm_dir, ignore_errors=True)
        shutil.rmtree(spill_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

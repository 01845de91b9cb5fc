"""The raylet-side manager of one node's object store: which sealed objects exist, how much shared
memory they use, and what to evict or spill to disk when the capacity is exceeded.

Processes write and read object files themselves (``runtime.shm``); the raylet records each sealed
object with ``add`` and is the only caller of this class (one thread: the raylet's asyncio loop).
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from runtime.exceptions import ObjectStoreFullError
from runtime.shm import TMP_SUFFIX, ObjectNotFoundError, object_path, tmp_path, unlink_if_exists

__all__ = ["ObjectNotFoundError", "ObjectStore", "StoreStats"]


# Spill may use this share of the spill disk's free space at start unless a cap is given.
SPILL_DEFAULT_SHARE = 0.5


def default_spill_capacity_bytes(spill_dir: str) -> int:
    return int(shutil.disk_usage(spill_dir).free * SPILL_DEFAULT_SHARE)


class _SpillFailed(Exception):
    """Copying an object to the spill directory failed (the disk is full or gone)."""

    def __init__(self, object_id: str, cause: OSError) -> None:
        super().__init__(f"spilling {object_id} failed: {cause}")
        self.object_id = object_id
        self.cause = cause


@dataclass(frozen=True, slots=True)
class StoreStats:
    """A snapshot of the store. ``num_spilled``/``spilled_bytes`` count the objects that have a
    copy on disk now; ``num_evicted`` counts secondary copies dropped since the store started."""

    used_bytes: int
    capacity_bytes: int
    num_objects: int
    num_spilled: int
    spilled_bytes: int
    num_evicted: int


@dataclass(frozen=True, slots=True)
class StoredCopy:
    """One object as the store holds it (see _Entry)."""

    object_id: str
    size: int
    primary: bool
    in_memory: bool
    spilled: bool
    pins: int


@dataclass(slots=True)
class _Entry:
    size: int
    primary: bool  # False: a copy fetched from another node, which can be dropped and refetched
    in_shm: bool  # a sealed copy is in shm_dir (counts against the capacity)
    spilled: bool  # a copy is in spill_dir (kept after a restore, so spilling again is free)
    pins: int = 0  # local users in progress (a reader about to map it, a transfer): never moved


# Spare pages: a fresh tmpfs page costs ~0.55 s/GB to allocate and fill here, a page already
# allocated ~0.25 s/GB. When a fetched copy of at least SPARE_MIN_BYTES is freed, the node keeps
# a spare file of that size (allocated in the background, never seen by any reader, so nobody
# can be mapping it), and the next fetch of a similar size writes into it. Spares take at most
# SPARE_SHARE of the capacity (and only free capacity) and are the first thing dropped when room
# is needed. (Ray's plasma
# gets the same from reusing its arena.)
SPARE_MIN_BYTES = 64 * 1024 * 1024
SPARE_SHARE = 0.5
SPARE_PREFIX = ".spare-"


class ObjectStore:
    """Tracks the objects of one node and enforces the shared-memory capacity.

    Order when over capacity: drop unpinned secondary copies (least recently used first), then spill
    unpinned primary copies (LRU) to disk. An object that cannot be brought into shared memory (larger
    than the capacity, or everything else pinned) is served from its spill file: still mmap-able,
    still zero-copy, through the page cache.
    """

    def __init__(self, shm_dir: str, capacity_bytes: int, spill_dir: str,
                 make_spare: Callable[[str, int], None] | None = None,
                 spill_capacity_bytes: int | None = None) -> None:
        """`make_spare(path, size)` allocates a spare file off the caller's thread and then
        calls `spare_ready` (None: no spares). `spill_capacity_bytes`: at most this much on disk
        (None: SPILL_DEFAULT_SHARE of the spill disk's free space now)."""
        if capacity_bytes <= 0:
            raise ValueError(f"object store capacity must be positive, got {capacity_bytes} bytes")
        self.shm_dir = shm_dir
        self.spill_dir = spill_dir
        self.capacity_bytes = capacity_bytes
        for directory in (shm_dir, spill_dir):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        self.spill_capacity_bytes = (
            default_spill_capacity_bytes(spill_dir) if spill_capacity_bytes is None else spill_capacity_bytes
        )
        self._spilled_bytes = 0
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # LRU first, MRU last
        self._used_bytes = 0
        self._num_evicted = 0
        self._make_spare = make_spare
        self._spares: dict[str, int] = {}  # ready spare files: path -> size
        self._spare_bytes = 0  # ready + being allocated
        self._spare_ids = itertools.count()

    # -- recording and lookup -------------------------------------------------------------------

    def add(self, object_id: str, size: int, *, primary: bool = True) -> None:
        """Record an object a process of this node has just sealed into shm_dir, then enforce the
        capacity (the new object is spilled last, and at once if it can never fit).
        Adding a known id again marks its shm copy present; ``primary`` is kept if either says so.
        Raises ObjectStoreFullError when no room can be made (spilling failed); a new object is then
        forgotten and its file removed, since the writer's put fails and nobody will free it."""
        if not os.path.exists(object_path(self.shm_dir, object_id)):
            raise ObjectNotFoundError(
                f"object {object_id} was added but is not sealed in {self.shm_dir}: "
                "write it with runtime.shm.write_object before recording it"
            )
        entry = self._entries.get(object_id)
        known = entry is not None
        if entry is None:
            entry = _Entry(size=size, primary=primary, in_shm=False, spilled=False)
            self._entries[object_id] = entry
        entry.primary = entry.primary or primary
        if not entry.in_shm:
            entry.in_shm = True
            self._used_bytes += entry.size
        self._entries.move_to_end(object_id)
        try:
            if not self._make_room(0, keep=object_id):
                # Larger than the capacity, or the rest is pinned: the newcomer goes to disk at
                # once (nothing else is moved for it) and stays readable there.
                self._spill(object_id, entry)
        except _SpillFailed as failed:
            error = self._full_error(object_id, entry.size, failed)
            if not known:  # (its own spill failed or never ran: its only copy is in shm)
                del self._entries[object_id]
                self._drop_shm_copy(object_id, entry)
            raise error from failed.cause

    def get_path(self, object_id: str) -> str:
        """Path of a sealed, readable copy, restoring a spilled object into shm_dir first when room
        can be made (as in add). Marks it recently used. Raises ObjectNotFoundError if unknown.
        The path is in spill_dir only when the object cannot fit in shared memory now."""
        entry = self._entry(object_id)
        self._entries.move_to_end(object_id)
        if not entry.in_shm and self._room_to_restore(object_id, entry):
            self._restore(object_id, entry)
        directory = self.shm_dir if entry.in_shm else self.spill_dir
        return object_path(directory, object_id)

    def primary_count(self) -> int:
        """How many primary copies (objects made here and not freed by their owner) this node holds."""
        return sum(1 for entry in self._entries.values() if entry.primary)

    def listing(self, limit: int) -> list[StoredCopy]:
        """Up to `limit` of the objects held, most recently used first (`rayctl list objects`)."""
        copies: list[StoredCopy] = []
        for object_id in reversed(self._entries):
            if len(copies) >= limit:
                break
            e = self._entries[object_id]
            copies.append(StoredCopy(object_id, e.size, e.primary, e.in_shm, e.spilled, e.pins))
        return copies

    def contains(self, object_id: str) -> bool:
        return object_id in self._entries

    def pin(self, object_id: str) -> None:
        """Keep the object where it is (no eviction, no spilling) until the matching unpin."""
        self._entry(object_id).pins += 1

    def unpin(self, object_id: str) -> None:
        entry = self._entries.get(object_id)
        if entry is not None and entry.pins > 0:
            entry.pins -= 1

    def delete(self, object_id: str) -> None:
        """Forget the object and remove its files. Unknown id: no-op. Readers that already mapped
        it keep a valid mapping (Linux keeps an unlinked inode alive while it is mapped)."""
        entry = self._entries.pop(object_id, None)
        if entry is None:
            return
        if entry.in_shm:
            self._used_bytes -= entry.size
        if entry.spilled:
            self._spilled_bytes -= entry.size
        unlink_if_exists(object_path(self.shm_dir, object_id))
        unlink_if_exists(object_path(self.spill_dir, object_id))
        if entry.in_shm and not entry.primary and entry.size >= SPARE_MIN_BYTES:
            self._keep_spare(entry.size)

    # -- spare pages (see SPARE_MIN_BYTES) -----------------------------------------------------

    def take_spare(self, size: int) -> str | None:
        """A ready spare file of at least `size` bytes (at most twice that), now the caller's to
        rename, truncate and fill; None if there is none."""
        fits_ = [(s, p) for p, s in self._spares.items() if size <= s <= 2 * size]
        if not fits_:
            return None
        spare_size, path = min(fits_)
        del self._spares[path]
        self._spare_bytes -= spare_size
        return path

    def spare_ready(self, path: str, size: int, ok: bool) -> None:
        """The background allocation of a spare finished (ok) or failed."""
        if ok and self._spare_bytes <= self.capacity_bytes:
            self._spares[path] = size
            if self._used_bytes + self._spare_bytes > self.capacity_bytes:
                self._drop_spares()  # objects came in meanwhile: they win
            return
        self._spare_bytes -= size
        unlink_if_exists(path)

    def _keep_spare(self, size: int) -> None:
        budget = min(int(self.capacity_bytes * SPARE_SHARE), self.capacity_bytes - self._used_bytes)
        if self._make_spare is None or self._spare_bytes + size > budget:
            return
        self._spare_bytes += size
        self._make_spare(os.path.join(self.shm_dir, f"{SPARE_PREFIX}{next(self._spare_ids)}"), size)

    def _drop_spares(self) -> None:
        for path, size in self._spares.items():
            unlink_if_exists(path)
            self._spare_bytes -= size
        self._spares.clear()

    def abort_partial(self) -> int:
        """Remove ``*.tmp`` files whose writer is gone (crashed mid-write); return how many.
        A .tmp named by a live process (``<id>.<pid>.<random>.tmp``) is left alone."""
        removed = 0
        for directory in (self.shm_dir, self.spill_dir):
            for name in os.listdir(directory):
                if name.endswith(TMP_SUFFIX) and not _writer_alive(name):
                    unlink_if_exists(os.path.join(directory, name))
                    removed += 1
        return removed

    def stats(self) -> StoreStats:
        spilled = [e for e in self._entries.values() if e.spilled]
        return StoreStats(
            used_bytes=self._used_bytes,
            capacity_bytes=self.capacity_bytes,
            num_objects=len(self._entries),
            num_spilled=len(spilled),
            spilled_bytes=sum(e.size for e in spilled),
            num_evicted=self._num_evicted,
        )

    def close(self) -> None:
        """Delete every object file and both directories. Idempotent."""
        self._entries.clear()
        self._used_bytes = 0
        self._spares.clear()
        for directory in (self.shm_dir, self.spill_dir):
            shutil.rmtree(directory, ignore_errors=True)

    # -- capacity -------------------------------------------------------------------------------

    def _entry(self, object_id: str) -> _Entry:
        entry = self._entries.get(object_id)
        if entry is None:
            raise ObjectNotFoundError(f"object {object_id} is not in this node's object store")
        return entry

    def _make_room(self, incoming: int, keep: str) -> bool:
        """Evict, then spill, until ``incoming`` more bytes fit. False if that is impossible.
        ``keep`` is never moved. Secondaries go first: they can be fetched again from their node,
        while a spilled primary costs a disk write now and a read later."""
        if self._used_bytes + self._spare_bytes + incoming <= self.capacity_bytes:
            return True  # the common case stays O(1)
        self._drop_spares()  # (one being allocated is dropped when it is ready)
        if self._used_bytes + incoming <= self.capacity_bytes:
            return True
        if self._used_bytes - self._movable_bytes(keep) + incoming > self.capacity_bytes:
            return False  # decided before moving anything: no spill that would not suffice
        for want_primary in (False, True):
            for object_id, entry in list(self._entries.items()):
                if self._used_bytes + incoming <= self.capacity_bytes:
                    return True
                if _movable(object_id, entry, keep) and entry.primary == want_primary:
                    (self._spill if want_primary else self._evict)(object_id, entry)
        return self._used_bytes + incoming <= self.capacity_bytes

    def _room_to_restore(self, object_id: str, entry: _Entry) -> bool:
        try:
            return self._make_room(entry.size, keep=object_id)
        except _SpillFailed:
            return False  # the object stays readable from its spill file

    def _full_error(self, object_id: str, size: int, failed: _SpillFailed) -> ObjectStoreFullError:
        """(Called while the newcomer still counts as used.)"""
        return ObjectStoreFullError(
            f"object store full: {object_id} ({size} bytes) needs room in this node's shared "
            f"memory ({self._used_bytes - size} of {self.capacity_bytes} bytes in use) and spilling "
            f"{failed.object_id} to {self.spill_dir} failed ({failed.cause.strerror or failed.cause}); "
            "free references to objects you no longer need, raise object_store_memory "
            "(runtime.init(object_store_memory=...) or rayctl start --object-store-memory), "
            "or give the spill directory more disk"
        )

    def _movable_bytes(self, keep: str) -> int:
        return sum(e.size for oid, e in self._entries.items() if _movable(oid, e, keep))

    def _evict(self, object_id: str, entry: _Entry) -> None:
        if entry.spilled:  # a secondary restored from disk earlier: its disk copy still serves
            self._drop_shm_copy(object_id, entry)
            return
        self.delete(object_id)
        self._num_evicted += 1

    def _spill(self, object_id: str, entry: _Entry) -> None:
        if not entry.spilled:
            try:
                self._check_spill_room(entry.size)
                _copy_atomically(self.shm_dir, self.spill_dir, object_id)
            except OSError as exc:
                raise _SpillFailed(object_id, exc) from exc
            entry.spilled = True
            self._spilled_bytes += entry.size
        self._drop_shm_copy(object_id, entry)

    def _check_spill_room(self, size: int) -> None:
        if self._spilled_bytes + size > self.spill_capacity_bytes:
            raise OSError(
                errno.ENOSPC,
                f"spill is full: {self._spilled_bytes} of its cap of {self.spill_capacity_bytes} "
                "bytes used; raise the cap with rayctl start --spill-capacity-bytes or "
                "runtime.init(spill_capacity_bytes=...)",
            )

    def _drop_shm_copy(self, object_id: str, entry: _Entry) -> None:
        unlink_if_exists(object_path(self.shm_dir, object_id))
        entry.in_shm = False
        self._used_bytes -= entry.size

    def _restore(self, object_id: str, entry: _Entry) -> None:
        try:
            _copy_atomically(self.spill_dir, self.shm_dir, object_id)
        except OSError:
            return  # /dev/shm itself is full: keep serving the spill file
        entry.in_shm = True
        self._used_bytes += entry.size


def _movable(object_id: str, entry: _Entry, keep: str) -> bool:
    """Whether capacity enforcement may evict or spill this entry's shm copy."""
    return entry.in_shm and not entry.pins and object_id != keep


def _copy_atomically(src_dir: str, dst_dir: str, object_id: str) -> None:
    """Copy an object file between directories via a .tmp name and a rename, so the destination is
    never partial. shutil.copyfile uses sendfile(2) on Linux: the bytes never pass through Python."""
    tmp = tmp_path(dst_dir, object_id)
    try:
        shutil.copyfile(object_path(src_dir, object_id), tmp)
        os.chmod(tmp, 0o600)
        os.rename(tmp, object_path(dst_dir, object_id))
    except BaseException:
        unlink_if_exists(tmp)
        raise


def _writer_alive(tmp_name: str) -> bool:
    """Whether the process named in ``<id>.<pid>.<random>.tmp`` still runs (False if unnamed)."""
    parts = tmp_name[: -len(TMP_SUFFIX)].split(".")
    if len(parts) < 2 or not parts[-2].isdigit():
        return False
    pid = int(parts[-2])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:  # a killed writer stays a zombie until its parent reaps it: that is gone too
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True

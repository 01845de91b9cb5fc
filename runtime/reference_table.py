"""What a process knows about objects: the values and locations of the ones it owns, readiness
waiters, and the reference counts that decide when an owned object is freed.

An owned object is freed when nothing can reach it any more:
  - no ObjectRef to it is alive in the owner (`local`),
  - no submitted task takes it as an argument, top-level or nested in a value (`submitted`),
  - no other process borrows it: a worker that kept a ref it got nested in its arguments is
    reported in the task's reply and releases it with a message when it drops it (`borrowers`),
  - no live owned object contains it in its value (`contained_by`).
A worker that returns a value holding a ref registers the caller as a borrower with the ref's
owner before replying; a process passing on a ref it only borrows (nested in a task's arguments)
holds it until the task's reply, then registers the worker with the owner before letting go.
Refs in an actor's constructor arguments stay counted as submitted for good: the GCS keeps the
creation spec for restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

PENDING, READY = 0, 1


class Entry:
    __slots__ = ("state", "inline", "location", "error", "waiters", "local", "submitted",
                 "size", "borrowers", "contained_by", "contains")

    def __init__(self) -> None:
        self.state = PENDING
        self.inline: tuple[bytes, list[bytes]] | None = None
        self.location: tuple[str, str] | None = None  # (node_id, shm_dir) of the primary copy
        self.error: BaseException | None = None
        # the containers below are made on first use: a million queued tasks' return entries
        # would otherwise hold ~330 B each of empty ones
        self.waiters: list[Callable[[], object]] | None = None
        self.local = 0
        self.submitted = 0
        self.size = 0
        self.borrowers: set[str] | None = None
        self.contained_by = 0
        self.contains: list[tuple[str, str]] | None = None  # (object id, owner address) of refs in the value

    def unreferenced(self) -> bool:
        return (self.local <= 0 and self.submitted <= 0 and not self.borrowers
                and self.contained_by <= 0 and self.state == READY)


class ReferenceTable:
    def __init__(self, my_address: str, free_callback: Callable[[str, Entry], None],
                 release_borrowed: Callable[[str, str], None]) -> None:
        self.lock = threading.Lock()
        self.my_address = my_address
        self.owned: dict[str, Entry] = {}
        self.borrowed: dict[str, int] = {}
        self._free = free_callback
        self._release_borrowed = release_borrowed

    # -- ownership -----------------------------------------------------------------------------
    def new_owned(self, object_id: str) -> Entry:
        entry = Entry()
        with self.lock:
            self.owned[object_id] = entry
        return entry

    def complete(self, object_id: str, *, inline: tuple[bytes, list[bytes]] | None = None,
                 location: tuple[str, str] | None = None, error: BaseException | None = None,
                 size: int = 0, contains: Iterable[tuple[str, str]] = ()) -> None:
        """The object's value is known (or its error). `contains`: refs nested in the value."""
        self.add_contained(object_id, contains)
        with self.lock:
            entry = self.owned.get(object_id)
            if entry is None:
                return
            entry.inline, entry.location, entry.error, entry.size = inline, location, error, size
            entry.state = READY
            waiters, entry.waiters = entry.waiters or (), None
        for wake in waiters:
            wake()
        self._maybe_free([object_id])

    def reset(self, object_id: str) -> None:
        """Back to pending (a task is being retried)."""
        with self.lock:
            entry = self.owned.get(object_id)
            if entry is not None:
                entry.state = PENDING

    def on_ready(self, object_id: str, wake: Callable[[], object]) -> bool:
        """Call `wake` once the owned object is ready; False if it is ready already (or unknown)."""
        with self.lock:
            entry = self.owned.get(object_id)
            if entry is None or entry.state == READY:
                return False
            if entry.waiters is None:
                entry.waiters = []
            entry.waiters.append(wake)
            return True

    def off_ready(self, object_id: str, wake: Callable[[], object]) -> None:
        """Take back an `on_ready` whose caller stopped waiting."""
        with self.lock:
            entry = self.owned.get(object_id)
            if entry is not None and entry.waiters and wake in entry.waiters:
                entry.waiters.remove(wake)

    def get_entry(self, object_id: str) -> Entry | None:
        return self.owned.get(object_id)

    # -- counting ------------------------------------------------------------------------------
    def add_local_ref(self, ref: Any) -> None:
        with self.lock:
            entry = self.owned.get(ref.id)
            if entry is not None:
                entry.local += 1
            elif ref.owner_address != self.my_address:
                self.borrowed[ref.id] = self.borrowed.get(ref.id, 0) + 1

    def remove_local_ref(self, ref: Any) -> None:
        self._drop_borrowed_or_local(ref.id, ref.owner_address)

    def _drop_borrowed_or_local(self, object_id: str, owner_address: str) -> None:
        release = False
        with self.lock:
            entry = self.owned.get(object_id)
            if entry is not None:
                entry.local -= 1
            elif object_id in self.borrowed:
                self.borrowed[object_id] -= 1
                if self.borrowed[object_id] <= 0:
                    del self.borrowed[object_id]
                    release = True
        if entry is not None:
            self._maybe_free([object_id])
        if release:
            self._release_borrowed(object_id, owner_address)

    def add_submitted(self, object_ids: Iterable[str]) -> None:
        with self.lock:
            for object_id in object_ids:
                entry = self.owned.get(object_id)
                if entry is not None:
                    entry.submitted += 1

    def remove_submitted(self, object_ids: Iterable[str]) -> None:
        ids = list(object_ids)
        with self.lock:
            for object_id in ids:
                entry = self.owned.get(object_id)
                if entry is not None:
                    entry.submitted -= 1
        self._maybe_free(ids)

    def add_borrower(self, object_id: str, address: str) -> None:
        with self.lock:
            entry = self.owned.get(object_id)
            if entry is not None:
                if entry.borrowers is None:
                    entry.borrowers = set()
                entry.borrowers.add(address)

    def remove_borrower(self, object_id: str, address: str) -> None:
        with self.lock:
            entry = self.owned.get(object_id)
            if entry is None:
                return
            if entry.borrowers:
                entry.borrowers.discard(address)
        self._maybe_free([object_id])

    def add_contained(self, outer_id: str, inner: Iterable[tuple[str, str]]) -> None:
        """The value of owned object `outer_id` holds refs `inner` (id, owner): keep them alive
        while it lives (owned ones by count, borrowed ones by holding our borrow)."""
        inner = list(inner)
        if not inner:
            return
        with self.lock:
            outer = self.owned.get(outer_id)
            if outer is None:
                return
            for object_id, owner in inner:
                entry = self.owned.get(object_id)
                if entry is not None:
                    entry.contained_by += 1
                elif owner != self.my_address:
                    self.borrowed[object_id] = self.borrowed.get(object_id, 0) + 1
                if outer.contains is None:
                    outer.contains = []
                outer.contains.append((object_id, owner))

    def _maybe_free(self, object_ids: Iterable[str]) -> None:
        """Free each unreferenced owned object, then what only it kept alive."""
        work = list(object_ids)
        while work:
            object_id = work.pop()
            with self.lock:
                entry = self.owned.get(object_id)
                if entry is None or not entry.unreferenced():
                    continue
                del self.owned[object_id]
                inner, entry.contains = entry.contains or [], None
                for inner_id, _ in inner:
                    held = self.owned.get(inner_id)
                    if held is not None:
                        held.contained_by -= 1
                        work.append(inner_id)
            self._free(object_id, entry)
            for inner_id, owner in inner:
                if inner_id not in self.owned:
                    self._drop_borrowed_or_local_borrow(inner_id, owner)

    def hold(self, object_id: str, owner: str) -> None:
        """Take one more hold on a borrowed ref (a resubmitted task holds its arguments again)."""
        with self.lock:
            if object_id not in self.owned and owner != self.my_address:
                self.borrowed[object_id] = self.borrowed.get(object_id, 0) + 1

    def drop_hold(self, object_id: str, owner: str) -> None:
        """Drop one hold on a borrowed ref taken with add_local_ref (releasing at zero)."""
        self._drop_borrowed_or_local_borrow(object_id, owner)

    def _drop_borrowed_or_local_borrow(self, object_id: str, owner: str) -> None:
        if owner == self.my_address:
            return
        release = False
        with self.lock:
            if object_id in self.borrowed:
                self.borrowed[object_id] -= 1
                if self.borrowed[object_id] <= 0:
                    del self.borrowed[object_id]
                    release = True
        if release:
            self._release_borrowed(object_id, owner)

    def still_borrowed(self, object_ids: Iterable[str]) -> list[str]:
        """Which of these (borrowed) ids this process still holds refs to."""
        with self.lock:
            return [i for i in object_ids if self.borrowed.get(i, 0) > 0]

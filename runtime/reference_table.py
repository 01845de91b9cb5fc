"""What a process knows about objects: the values and locations of the ones it owns, readiness
waiters, and the reference counts that decide when an owned object is freed.

Counting rule (conservative: never frees early, may keep an object longer than Ray would):
an owned object is freed when no ObjectRef to it is alive in the owner, no submitted task takes it
as a top-level argument, and it never escaped inside another value or to another process. Refs
that escape (nested in a put value, a task argument or a return value) keep their object until
the owner exits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

PENDING, READY = 0, 1


class Entry:
    __slots__ = (
        "state",
        "inline",
        "location",
        "error",
        "waiters",
        "local",
        "submitted",
        "escaped",
        "size",
    )

    def __init__(self) -> None:
        self.state = PENDING
        self.inline: tuple[bytes, list[bytes]] | None = None
        self.location: tuple[str, str] | None = None  # (node_id, shm_dir) of the primary copy
        self.error: BaseException | None = None
        self.waiters: list[Callable[[], object]] = []
        self.local = 0
        self.submitted = 0
        self.escaped = False
        self.size = 0


class ReferenceTable:
    def __init__(
        self,
        my_address: str,
        free_callback: Callable[[str, Entry], None],
        release_borrowed: Callable[[str, str], None],
    ) -> None:
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

    def complete(
        self,
        object_id: str,
        *,
        inline: tuple[bytes, list[bytes]] | None = None,
        location: tuple[str, str] | None = None,
        error: BaseException | None = None,
        size: int = 0,
    ) -> None:
        with self.lock:
            entry = self.owned.get(object_id)
            if entry is None:
                return
            entry.inline, entry.location, entry.error, entry.size = inline, location, error, size
            entry.state = READY
            waiters, entry.waiters = entry.waiters, []
            drop = self._unreferenced(entry)
            if drop:
                del self.owned[object_id]
        for wake in waiters:
            wake()
        if drop:
            self._free(object_id, entry)

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
            entry.waiters.append(wake)
            return True

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
        release = False
        drop: Entry | None = None
        with self.lock:
            entry = self.owned.get(ref.id)
            if entry is not None:
                entry.local -= 1
                if self._unreferenced(entry) and entry.state == READY:
                    drop = self.owned.pop(ref.id)
            elif ref.id in self.borrowed:
                self.borrowed[ref.id] -= 1
                if self.borrowed[ref.id] <= 0:
                    del self.borrowed[ref.id]
                    release = True
        if drop is not None:
            self._free(ref.id, drop)
        if release:
            self._release_borrowed(ref.id, ref.owner_address)

    def add_submitted(self, object_ids: list[str]) -> None:
        with self.lock:
            for object_id in object_ids:
                entry = self.owned.get(object_id)
                if entry is not None:
                    entry.submitted += 1

    def remove_submitted(self, object_ids: list[str]) -> None:
        dropped = []
        with self.lock:
            for object_id in object_ids:
                entry = self.owned.get(object_id)
                if entry is None:
                    continue
                entry.submitted -= 1
                if self._unreferenced(entry) and entry.state == READY:
                    dropped.append((object_id, self.owned.pop(object_id)))
        for object_id, entry in dropped:
            self._free(object_id, entry)

    def mark_escaped(self, refs: list[Any]) -> None:
        with self.lock:
            for ref in refs:
                entry = self.owned.get(ref.id)
                if entry is not None:
                    entry.escaped = True

    @staticmethod
    def _unreferenced(entry: Entry) -> bool:
        return entry.local <= 0 and entry.submitted <= 0 and not entry.escaped

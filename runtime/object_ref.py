"""ObjectRef: a handle to a value that may not exist yet. Counting live handles in each process is
how the owner learns when an object can be freed."""

from __future__ import annotations

import threading
from typing import Any

# Set by runtime.core_worker when a process connects; refs made before that are not counted.
_counter: Any = None
# While a value is being serialized, refs found inside it are collected here (see serialization).
_collect = threading.local()


def set_reference_counter(counter: Any) -> None:
    global _counter
    _counter = counter


class ObjectRef:
    __slots__ = ("id", "owner_address", "__weakref__")

    def __init__(self, object_id: str, owner_address: str, _register: bool = True) -> None:
        self.id = object_id
        self.owner_address = owner_address
        if _register and _counter is not None:
            _counter.add_local_ref(self)

    def __del__(self) -> None:
        counter = _counter
        if counter is not None:
            try:
                counter.remove_local_ref(self)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass

    def __reduce__(self) -> tuple[Any, ...]:
        found = getattr(_collect, "refs", None)
        if found is not None:
            found.append(self)
        return (_rebuild_ref, (self.id, self.owner_address))

    def hex(self) -> str:
        return self.id

    def task_id(self) -> str:
        return self.id[:-2]

    def __repr__(self) -> str:
        return f"ObjectRef({self.id})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __await__(self) -> Any:
        """`await ref` inside async actors and drivers, as in Ray."""
        from runtime import api

        return api.get_async(self).__await__()


def _rebuild_ref(object_id: str, owner_address: str) -> ObjectRef:
    ref = ObjectRef(object_id, owner_address)
    if _counter is not None:
        _counter.on_ref_deserialized(ref)
    return ref

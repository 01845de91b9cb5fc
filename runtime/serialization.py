"""Values to bytes and back: cloudpickle (functions, classes, closures) with pickle protocol 5
out-of-band buffers, so numpy arrays and bytes are copied once into shared memory and read back
without a copy."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from runtime import object_ref


@dataclass(slots=True)
class Serialized:
    meta: bytes
    buffers: list[pickle.PickleBuffer] = field(default_factory=list)
    contained_refs: list[Any] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.meta) + sum(memoryview(b).nbytes for b in self.buffers)

    def inline(self) -> tuple[bytes, list[bytes]]:
        """A self-contained form for sending inside a message."""
        return self.meta, [memoryview(b).tobytes() for b in self.buffers]


def serialize(value: Any) -> Serialized:
    buffers: list[pickle.PickleBuffer] = []
    refs: list[Any] = []
    outer = getattr(object_ref._collect, "refs", None)
    object_ref._collect.refs = refs
    try:
        meta = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    finally:
        object_ref._collect.refs = outer
    return Serialized(meta, buffers, refs)


def deserialize(meta: bytes | memoryview, buffers: list[Any]) -> Any:
    return pickle.loads(meta, buffers=buffers)


def dumps_function(fn: Any) -> bytes:
    return cloudpickle.dumps(fn, protocol=5)

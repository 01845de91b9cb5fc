"""Spill space has a cap: once spilled objects reach it, a put or a task return that needs room
fails with one ObjectStoreFullError saying spill is full and how to raise the cap, and every
object stored before stays readable (nothing is dropped to make room)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.exceptions import ObjectStoreFullError

MiB = 1024**2


@pytest.fixture
def capped_cluster(temp_dir: str) -> Iterator[tuple[Any, str]]:
    """A private one-node cluster: 4 MiB of shared memory, at most 2 MiB spilled."""
    import runtime as rt

    rt.init(
        num_cpus=1, object_store_memory=4 * MiB, spill_capacity_bytes=2 * MiB, _temp_dir=temp_dir
    )
    try:
        (spill_dir,) = Path(temp_dir).glob("session_*/spill/*")
        yield rt, str(spill_dir)
    finally:
        rt.shutdown()


def test_full_spill_refuses_puts_and_returns_with_a_clear_error(
    capped_cluster: tuple[Any, str],
) -> None:
    rt, spill_dir = capped_cluster
    held = []
    with pytest.raises(ObjectStoreFullError) as info:
        for i in range(20):  # 4 MiB in shm + 2 MiB on disk hold about 5 of these
            held.append(rt.put(bytes([i]) * MiB))
    message = str(info.value)
    assert "spill is full" in message and "--spill-capacity-bytes" in message
    assert 3 <= len(held) <= 6, f"the cap bounded the store: {len(held)} puts fitted"
    spilled = sum(os.path.getsize(os.path.join(spill_dir, n)) for n in os.listdir(spill_dir))
    assert spilled <= 2 * MiB

    @rt.remote
    def big() -> bytes:
        return b"r" * MiB

    with pytest.raises(ObjectStoreFullError, match="spill is full"):
        rt.get(big.remote(), timeout=30)
    assert [rt.get(ref)[0] for ref in held] == list(range(len(held))), "nothing stored was dropped"

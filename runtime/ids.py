"""Identifiers: random hex ids for nodes, jobs, actors and workers; compact task/object ids."""

from __future__ import annotations

import itertools
import os


def random_id(nbytes: int = 8) -> str:
    return os.urandom(nbytes).hex()


class TaskIdGenerator:
    """Task ids are a per-process random prefix plus a counter: unique, cheap, and ordered."""

    def __init__(self) -> None:
        self._prefix = random_id(6)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):010x}"


def object_id_for(task_id: str, index: int) -> str:
    """The id of a task's `index`-th return value (put objects use index 0 of a fresh task id)."""
    return f"{task_id}{index:02x}"

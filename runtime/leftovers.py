"""Reclaiming what killed raylets left: their shared-memory directories (the ones recorded in a
session's `shm_dirs`, whatever root they were under) and spill directories, in the starting
raylet's own session and in every other session under the same temp dir (a node or a whole
cluster killed without `rayctl stop`, a machine that rebooted). A raylet runs this as it starts;
only raylets whose recorded process is really gone (pid and create time, as `rayctl stop`
checks) lose their directories."""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil

import psutil

log = logging.getLogger("rayctl.leftovers")

RAYLET_PID_PREFIX = "raylet-"


def reclaim_dead_raylets_here(session_dir: str, this_node_id: str) -> list[str]:
    """Dead raylets' directories in every session next to `session_dir` (its own included)."""
    dead: list[str] = []
    parent = os.path.dirname(os.path.abspath(session_dir))
    for session in sorted(glob.glob(os.path.join(parent, "session_*"))):
        if os.path.isdir(session):
            dead += reclaim_dead_raylets(session, this_node_id)
    return dead


def reclaim_dead_raylets(session_dir: str, this_node_id: str) -> list[str]:
    """Remove the directories of this session's raylets that are dead; return their node ids."""
    dead = [
        node_id
        for node_id, rec in _raylet_records(session_dir)
        if node_id != this_node_id and not _alive(rec)
    ]
    if not dead:
        return []
    shm_dirs = _recorded_shm_dirs(session_dir)
    for node_id in dead:
        for path in (shm_dirs.get(node_id), os.path.join(session_dir, "spill", node_id)):
            if path:
                shutil.rmtree(path, ignore_errors=True)
        _unlink(os.path.join(session_dir, "pids", f"{RAYLET_PID_PREFIX}{node_id}.pid"))
    log.info("removed the shm and spill directories of %d dead raylet(s): %s", len(dead), dead)
    return dead


def _raylet_records(session_dir: str) -> list[tuple[str, dict[str, float]]]:
    records = []
    for path in glob.glob(os.path.join(session_dir, "pids", f"{RAYLET_PID_PREFIX}*.pid")):
        node_id = os.path.basename(path)[len(RAYLET_PID_PREFIX) : -len(".pid")]
        try:
            with open(path) as f:
                records.append((node_id, json.load(f)))
        except (OSError, ValueError):
            continue  # being written (renamed into place atomically) or unreadable: leave it
    return records


def _alive(rec: dict[str, float]) -> bool:
    try:
        proc = psutil.Process(int(rec["pid"]))
        return (
            abs(proc.create_time() - rec["create_time"]) < 0.01
            and proc.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.NoSuchProcess:
        return False
    except (KeyError, ValueError, TypeError, psutil.Error):
        return True  # cannot tell: keep its directories


def _recorded_shm_dirs(session_dir: str) -> dict[str, str]:
    """node id -> its shm dir, from the session's record (only `rayctl-<node_id>` names)."""
    try:
        with open(os.path.join(session_dir, "shm_dirs")) as f:
            paths = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        return {}
    return {
        os.path.basename(p)[len("rayctl-") :]: p
        for p in paths
        if os.path.basename(p).startswith("rayctl-")
    }


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

"""Which cluster `init(address="auto")`, `rayctl status` and `rayctl job` reach on a machine
that runs more than one: the `rayctl start --head` cluster and those `rayctl up` registered.
Records are made by hand here (their head processes: this test's own pid), no cluster runs."""

from __future__ import annotations

import json
import os

import pytest

from runtime.node import (
    START_CLUSTER,
    choose_local_cluster,
    forget_cluster,
    local_clusters,
    register_cluster,
)
from runtime.private_state import ensure_private_dir
from runtime.session import record_pid


def _session(tmp_path, name: str, alive: bool = True) -> str:
    session = tmp_path / f"session_{name}"
    (session / "pids").mkdir(parents=True)
    if alive:
        record_pid(str(session), "gcs", os.getpid())
    return str(session)


def test_auto_picks_the_only_cluster_and_refuses_to_guess_between_two(tmp_path) -> None:
    temp = ensure_private_dir(str(tmp_path / "rayctl"))
    with pytest.raises(ConnectionError, match="no cluster runs on this machine"):
        choose_local_cluster("auto", temp)
    register_cluster("dev", "127.0.0.1:7001", "/t/dev", _session(tmp_path, "dev"), temp)
    only = choose_local_cluster("auto", temp)
    assert only is not None and (only.name, only.address) == ("dev", "127.0.0.1:7001")
    with open(os.path.join(temp, "cluster_address.json"), "w") as f:  # `rayctl start --head`
        json.dump({"address": "127.0.0.1:7002", "token_file": "/t/start",
                   "session_dir": _session(tmp_path, "start"), "cluster_id": "c1"}, f)
    with pytest.raises(ConnectionError) as err:
        choose_local_cluster("auto", temp)
    message = str(err.value)
    assert "'dev' at 127.0.0.1:7001" in message and f"'{START_CLUSTER}' at 127.0.0.1:7002" in message
    assert "RAYCTL_ADDRESS" in message and "\n" not in message
    chosen = choose_local_cluster("dev", temp)
    assert chosen is not None and chosen.token_file == "/t/dev"  # by name, with its own token
    by_address = choose_local_cluster("127.0.0.1:7002", temp)
    assert by_address is not None and by_address.token_file == "/t/start"
    assert choose_local_cluster("10.0.0.9:7000", temp) is None  # not here: no token offered


def test_a_cluster_whose_head_is_gone_is_left_out(tmp_path) -> None:
    temp = ensure_private_dir(str(tmp_path / "rayctl"))
    register_cluster("old", "127.0.0.1:7003", "/t/old", _session(tmp_path, "old", alive=False), temp)
    register_cluster("new", "127.0.0.1:7004", "/t/new", _session(tmp_path, "new"), temp)
    assert [c.name for c in local_clusters(temp)] == ["new"]
    forget_cluster("new", temp)
    assert local_clusters(temp) == []

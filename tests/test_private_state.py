"""Private state (issue 13, item 3): the temp dir and the SSH control dir are this user's alone or
refused; token and address files are written 0600 without following a planted symlink; Redis
listens on loopback only, whatever address the head serves on."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import psutil
import pytest

from runtime.node import read_address_file
from runtime.private_state import ensure_private_dir, write_private_file

OTHER_UID = 65534  # nobody


def test_a_new_dir_is_made_0700_and_a_private_one_is_accepted(tmp_path: Path) -> None:
    made = tmp_path / "rayctl"
    ensure_private_dir(str(made))
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    ensure_private_dir(str(made))  # again: fine


@pytest.mark.parametrize("how", ["other owner", "world writable", "symlink"])
def test_a_dir_someone_else_controls_is_refused_in_one_line(tmp_path: Path, how: str) -> None:
    target = tmp_path / "rayctl"
    if how == "symlink":
        real = tmp_path / "elsewhere"
        real.mkdir(mode=0o700)
        target.symlink_to(real)
    else:
        target.mkdir(mode=0o700)
        if how == "other owner":
            if os.getuid() != 0:
                pytest.skip("giving a directory to another user needs root")
            os.chown(target, OTHER_UID, -1)
        else:
            target.chmod(0o777)
    with pytest.raises(PermissionError) as caught:
        ensure_private_dir(str(target))
    text = str(caught.value)
    assert str(target) in text and "RAYCTL_TEMP_DIR" in text and "\n" not in text


def test_init_auto_does_not_trust_an_address_file_in_a_dir_others_control(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "cluster_address.json").write_text(
        json.dumps({"address": "198.51.100.9:6379", "token_file": "/x", "session_dir": "/y"})
    )
    shared.chmod(0o777)  # anyone could have written that file
    with pytest.raises(PermissionError, match="writable by others"):
        read_address_file(str(shared))
    assert read_address_file(str(tmp_path / "missing")) is None


def test_a_planted_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    token = tmp_path / "token"
    token.symlink_to(victim)
    write_private_file(str(token), "secret")
    assert victim.read_text() == "precious"
    assert not token.is_symlink() and token.read_text() == "secret"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".new")] == []


def test_redis_listens_on_loopback_while_the_head_serves_another_address(tmp_path: Path) -> None:
    from runtime.node import start_head
    from runtime.session import session_processes, stop_session

    head = start_head(host="127.0.0.2", num_cpus=0, temp_dir=str(tmp_path / "t"),
                      parent_pid=os.getpid())
    try:
        assert head.gcs_address.startswith("127.0.0.2:")
        assert head.redis_address.startswith("127.0.0.1:")
        listening = {
            proc.pid: {c.laddr.ip for c in proc.net_connections("inet")
                       if c.status == psutil.CONN_LISTEN}
            for proc in session_processes(head.session_dir)
        }
        redis_port = int(head.redis_address.rpartition(":")[2])
        on_redis_port = [
            c.laddr.ip for c in psutil.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == redis_port
        ]
        assert on_redis_port == ["127.0.0.1"], on_redis_port
        assert any("127.0.0.2" in ips for ips in listening.values())  # the GCS and raylet
    finally:
        stop_session(head.session_dir, grace_s=3)


def _this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str
) -> tuple[str, str]:
    """A private temp dir holding a token file with `secret`, and no token in the environment."""
    monkeypatch.delenv("RAYCTL_TOKEN_FILE", raising=False)
    monkeypatch.delenv("RAYCTL_TOKEN", raising=False)
    temp_dir = str(tmp_path / "t")
    ensure_private_dir(temp_dir)
    token_file = os.path.join(temp_dir, "token")
    write_private_file(token_file, secret)
    return temp_dir, token_file


def test_this_machines_token_never_goes_to_another_clusters_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`init(address=X)` and `rayctl start --address X` without a token used to send the token
    of the cluster started on this machine to X, whoever listens there."""
    from runtime.api import _locate
    from runtime.cli_commands import _find_credentials
    from runtime.node import NodeHandle, write_address_file

    temp_dir, token_file = _this_machine(tmp_path, monkeypatch, "this-machines-secret")
    write_address_file(temp_dir, NodeHandle("127.0.0.1:6001", token_file, temp_dir, "n", 0, ""))
    elsewhere = "198.51.100.9:6379"  # (TEST-NET: nothing is ever sent there)
    with pytest.raises(ConnectionError, match=f"no cluster token for {elsewhere}"):
        _locate(elsewhere, temp_dir, None)
    with pytest.raises(ValueError, match=f"no cluster token for {elsewhere}"):
        _find_credentials(None, temp_dir, elsewhere)
    assert _find_credentials(None, temp_dir, "127.0.0.1:6001").token == "this-machines-secret"


def test_a_stale_address_file_is_named_with_both_clusters_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The address file names a cluster that has stopped, and another cluster now answers at
    its address: init("auto") says so instead of a bare authentication error."""
    from runtime.api import _locate
    from runtime.cluster_utils import Cluster
    from runtime.node import NodeHandle, write_address_file

    temp_dir, token_file = _this_machine(tmp_path, monkeypatch, "the-stopped-clusters-secret")
    other = Cluster({"num_cpus": 0})
    try:
        write_address_file(temp_dir, NodeHandle(other.head.gcs_address, token_file, temp_dir, "n",
                                                0, "", cluster_id="gone1"))
        with pytest.raises(ConnectionError) as info:
            _locate("auto", temp_dir, None)
    finally:
        other.shutdown()
    message = str(info.value)
    assert "\n" not in message
    assert "names cluster gone1" in message
    assert f"it is cluster {other.head.cluster_id}" in message and other.head.cluster_id
    assert "start it again" in message

"""The cluster launcher end to end on the local provider, with real processes: `up` starts a head
whose monitor scales workers for a driver's tasks, a second `up` changes nothing, exec / submit /
rsync / get-head-ip reach the head, `down` leaves no process and no slot behind (also after an
interrupted `up`). HOME, RAYCTL_TEMP_DIR and the provider's state dir all live under tmp dirs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from polling import wait_for
from typer.testing import CliRunner, Result

from autoscaler.cli import app
from autoscaler.config import validate_config
from autoscaler.launcher.down import choose_targets
from autoscaler.launcher.ship import config_targets, head_config_dict
from autoscaler.launcher.up import HeadAction, Health, UpOptions, apply_overrides, decide_work
from providers.base import NODE_KIND_HEAD, TAG_NODE_KIND, Instance, Offering, ProviderState
from providers.local import LocalProvider

NAME = "lt"


def make_config(root: Path, name: str = NAME, **extra: Any) -> dict[str, Any]:
    return {
        "cluster_name": name,
        "max_workers": 3,
        "provider": {"type": "local", "state_dir": str(root / "slots"), "terminate_grace_s": 1},
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 0}},
            "cpu": {"resources": {"CPU": 1}, "max_workers": 2, "idle_timeout_s": 3},
            "gpu": {"resources": {"CPU": 1, "GPU": 1}, "max_workers": 1, "idle_timeout_s": 3},
        },
        **extra,
    }


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def cluster_pids(root: Path) -> set[int]:
    """Every live process that belongs to clusters under `root`: recorded in a session's pid
    files, or started with a RAYCTL_TEMP_DIR there (raylet-forked workers, runner commands)."""
    from runtime.session import all_sessions, session_processes

    pids = {
        p.pid
        for tmp in root.glob("slots/*/nodes/*/tmp")
        for s in all_sessions(str(tmp))
        for p in session_processes(s)
    }
    for proc in psutil.process_iter():
        try:
            if str(root) in proc.environ().get("RAYCTL_TEMP_DIR", ""):
                pids.add(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return {p for p in pids if _alive(p)}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass
class Cluster:
    root: Path
    config_file: Path
    provider: LocalProvider
    up_output: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("launcher")
    config_file = root / "cluster.yaml"
    config_file.write_text(yaml.safe_dump(make_config(root)))
    provider = LocalProvider(NAME, {"state_dir": str(root / "slots")}, {"head": {}, "cpu": {}})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HOME", str(root / "home"))
        env.setenv("RAYCTL_TEMP_DIR", str(root / "rayctl-tmp"))
        env.delenv("RAYCTL_ADDRESS", raising=False)
        env.delenv("RAYCTL_TOKEN_FILE", raising=False)
        try:
            result = invoke("up", str(config_file), "-y")
            assert result.exit_code == 0, result.output
            yield Cluster(root, config_file, provider, result.output)
        finally:
            invoke("down", str(config_file), "-y")
            provider.terminate([i.id for i in provider.list_instances()])  # if down failed


def head_record(cluster: Cluster) -> dict[str, str]:
    path = cluster.root / "home" / ".rayctl" / "clusters" / NAME / "head.json"
    data: dict[str, str] = json.loads(path.read_text())
    return data


# --- the lifecycle, in order ----------------------------------------------------------------------


def test_up_starts_a_head_whose_monitor_runs(cluster: Cluster) -> None:
    record = head_record(cluster)
    [head] = [i for i in cluster.provider.list_instances() if i.is_head]
    assert record["instance_id"] == head.id
    pid_file = Path(record["session_dir"]) / "pids" / "monitor.pid"
    monitor = psutil.Process(json.loads(pid_file.read_text())["pid"])
    assert "autoscaler.monitor" in " ".join(monitor.cmdline())
    assert 'rt.init(address="auto")' in cluster.up_output
    assert "Web service: http://127.0.0.1:" in cluster.up_output
    assert f"rayctl down {cluster.config_file} -y" in cluster.up_output
    shipped = cluster.provider.slot_dir(head.id) / "rayctl_cluster.yaml"
    assert yaml.safe_load(shipped.read_text())["cluster_name"] == NAME


def test_a_driver_runs_tasks_that_scale_the_cluster_up(cluster: Cluster) -> None:
    record = head_record(cluster)
    script = (
        "import runtime as rt\n"
        "rt.init(address='auto')\n"  # the cluster `up` made here, token included
        "@rt.remote(num_cpus=1)\n"
        "def where():\n"
        "    import time; time.sleep(0.5)\n"
        "    return rt.get_runtime_context().get_node_id()\n"
        "print(sorted(set(rt.get([where.remote() for _ in range(2)], timeout=60))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=dict(os.environ), capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    ran_on = set(json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"')))
    head_node = next((Path(record["session_dir"]) / "pids").glob("raylet-*.pid")).stem
    assert ran_on and head_node.removeprefix("raylet-") not in ran_on  # the head has 0 CPUs
    assert cluster.provider.state.read().next_index >= 3, "no worker slot was ever launched"


def test_rayctl_job_reaches_the_cluster_up_made(cluster: Cluster) -> None:
    result = invoke("job", "submit", "--", "echo from-a-submitted-job")
    assert result.exit_code == 0, result.output
    assert "from-a-submitted-job" in result.output and "succeeded" in result.output


def test_a_gpu_job_waits_for_the_gpu_node_the_autoscaler_launches(cluster: Cluster) -> None:
    """As with Ray's job server: the job's supervisor asks for the entrypoint's GPU, so the job
    is PENDING (with the reason in `rayctl status`) until the autoscaler's GPU node joins, then
    runs there."""
    submitted = invoke("job", "submit", "--no-wait", "--entrypoint-num-gpus", "1", "--",
                       "echo node-type=$RAYCTL_NODE_TYPE gpus=$CUDA_VISIBLE_DEVICES")
    assert submitted.exit_code == 0, submitted.output
    sid = submitted.output.split("Job '")[1].split("'")[0]
    assert "PENDING" in invoke("job", "status", sid).output
    status = wait_for(lambda: (out := invoke("status", str(cluster.config_file)).output)
                      and "(gpu) [queued_demand]" in out and out, 30, "the GPU launch in the status")
    assert "{GPU: 1}: 1+ pending actors" in status and "(gpu) [queued_demand]" in status, status
    wait_for(lambda: "SUCCEEDED" in invoke("job", "status", sid).output, 90, "the GPU job to run")
    logs = invoke("job", "logs", sid).output
    assert "node-type=gpu gpus=0" in logs, logs


def test_second_up_changes_nothing(cluster: Cluster) -> None:
    """Also after a worker on the head exited (an actor killed, as a finished job's supervisor
    is): a worker come and gone is not a service down, so nothing restarts."""
    head_before = head_record(cluster)
    head_node = next((Path(head_before["session_dir"]) / "pids").glob("raylet-*.pid")).stem
    script = (
        "import runtime as rt\n"
        "from runtime.util.scheduling_strategies import NodeAffinitySchedulingStrategy\n"
        "rt.init(address='auto')\n"
        "@rt.remote(num_cpus=0)\n"
        "class Pinned:\n"
        "    def pid(self):\n"
        "        import os; return os.getpid()\n"
        f"a = Pinned.options(scheduling_strategy=NodeAffinitySchedulingStrategy("
        f"{head_node.removeprefix('raylet-')!r}, soft=False)).remote()\n"
        "print(rt.get(a.pid.remote(), timeout=60))\n"
        "rt.kill(a)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=dict(os.environ), capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    pid = int(done.stdout.split()[-1])
    wait_for(lambda: not _alive(pid), 30, "the killed actor's worker on the head to exit")
    assert any(json.loads(p.read_text())["pid"] == pid for p in
               (Path(head_before["session_dir"]) / "pids").glob("worker-*.pid"))
    before = cluster.provider.state.read()
    result = invoke("up", str(cluster.config_file), "-y")
    assert result.exit_code == 0, result.output
    assert "nothing changed" in result.output, result.output
    assert head_record(cluster)["session_dir"] == head_before["session_dir"]  # not restarted
    heads = [s.id for s in cluster.provider.state.read().slots.values() if s.tags.get(
        TAG_NODE_KIND) == NODE_KIND_HEAD]
    assert heads == [head_before["instance_id"]]
    assert cluster.provider.state.read().next_index == before.next_index  # nothing launched


def test_exec_returns_output_and_exit_code(cluster: Cluster) -> None:
    result = invoke("exec", str(cluster.config_file), 'echo "at $RAYCTL_ADDRESS"; exit 7')
    assert result.exit_code == 7
    assert f"at {head_record(cluster)['address']}" in result.output


def test_submit_runs_a_script_on_the_head(cluster: Cluster, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(
        "import sys, runtime as rt\n"
        "rt.init()\n"  # RAYCTL_ADDRESS and RAYCTL_TOKEN_FILE come from submit
        "print('args', sys.argv[1:], rt.cluster_resources().get('CPU', 0) >= 0)\n"
    )
    result = invoke("submit", str(cluster.config_file), str(script), "--", "a", "--b")
    assert result.exit_code == 0, result.output
    assert "args ['a', '--b'] True" in result.output


def test_get_head_ip_and_rsync_round_trip(cluster: Cluster, tmp_path: Path) -> None:
    ip = invoke("get-head-ip", str(cluster.config_file))
    assert ip.exit_code == 0 and ip.output.strip() == "127.0.0.1"
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "data.txt").write_text("payload")
    pushed = invoke("rsync-up", str(cluster.config_file), str(tmp_path / "up"), "synced")
    assert pushed.exit_code == 0, pushed.output
    pulled = invoke("rsync-down", str(cluster.config_file), "synced", str(tmp_path / "down"))
    assert pulled.exit_code == 0, pulled.output
    assert (tmp_path / "down" / "data.txt").read_text() == "payload"


def test_status_runs_on_the_head(cluster: Cluster) -> None:
    from autoscaler.launcher.remote import status_on_head
    from autoscaler.launcher.up import load_cluster

    config = load_cluster(str(cluster.config_file))
    ran = wait_for(lambda: _status_ok(status_on_head(config, as_json=True, verbose=False)),
                   15, "the monitor's status")
    assert any(n["is_head"] for n in json.loads(ran.output)["nodes"])
    via_cli = invoke("status", str(cluster.config_file))  # what `up` tells the user to run
    assert via_cli.exit_code == 0 and "Node status" in via_cli.stdout, via_cli.output


def _status_ok(ran: Any) -> Any:
    return ran if ran.exit_code == 0 else None


def test_a_config_change_restarts_the_head_services(cluster: Cluster) -> None:
    """max_workers is not part of the launch hash: the head stays, its services restart
    with the new config (one head session at a time)."""
    before = head_record(cluster)
    cluster.config_file.write_text(yaml.safe_dump(make_config(cluster.root, max_workers=1)))
    result = invoke("up", str(cluster.config_file), "-y")
    assert result.exit_code == 0, result.output
    assert "Stopping the head's services" in result.output
    after = head_record(cluster)
    assert after["instance_id"] == before["instance_id"]
    assert after["session_dir"] != before["session_dir"]
    assert not any(_alive(p.pid) for p in _session_procs(before["session_dir"]))
    slot = cluster.provider.slot_dir(after["instance_id"])
    assert yaml.safe_load((slot / "rayctl_cluster.yaml").read_text())["max_workers"] == 1


def _session_procs(session_dir: str) -> list[Any]:
    from runtime.session import session_processes

    return session_processes(session_dir)


def test_a_launch_config_change_replaces_the_head(cluster: Cluster) -> None:
    before = head_record(cluster)
    raw = make_config(cluster.root, max_workers=1)
    raw["available_node_types"]["head"]["labels"] = {"zone": "b"}  # part of the launch hash
    cluster.config_file.write_text(yaml.safe_dump(raw))
    result = invoke("up", str(cluster.config_file), "-y")
    assert result.exit_code == 0, result.output
    after = head_record(cluster)
    assert after["instance_id"] != before["instance_id"]
    assert not cluster.provider.slot_dir(before["instance_id"]).exists()
    assert [i.id for i in cluster.provider.list_instances() if i.is_head] == [
        after["instance_id"]]


def test_status_of_a_head_without_services_says_what_is_left_and_what_to_do(
    cluster: Cluster,
) -> None:
    """As after an interrupted `down` (it stops the head's services first): status names the
    instances still up and both ways out, and `up --restart-only` is one of them."""
    config = str(cluster.config_file)
    assert invoke("exec", config, "rayctl stop").exit_code == 0
    result = invoke("status", config)
    assert result.exit_code == 1
    head_id = head_record(cluster)["instance_id"]
    assert f"head {head_id} runs no services" in result.output, result.output
    assert f"{head_id} (head)" in result.output
    assert "`rayctl up CONFIG --restart-only`" in result.output
    assert "`rayctl down CONFIG` removes everything" in result.output
    assert invoke("up", config, "-y", "--restart-only").exit_code == 0
    ran = wait_for(lambda: invoke("status", config).exit_code == 0 or None, 15, "status again")
    assert ran is True


def test_down_removes_every_process_and_slot(cluster: Cluster) -> None:
    pids = cluster_pids(cluster.root)
    assert pids, "the cluster should have processes before down"
    result = invoke("down", str(cluster.config_file), "-y")
    assert result.exit_code == 0, result.output
    assert "Removed" in result.output
    assert cluster.provider.list_instances() == []
    assert not any((cluster.root / "slots" / NAME / "nodes").iterdir())
    left = wait_for(lambda: not cluster_pids(cluster.root) or None, 10, "no process left")
    assert left is True
    again = invoke("down", str(cluster.config_file), "-y")
    assert again.exit_code == 0 and "nothing to remove" in again.output


# --- failures and interruptions ---------------------------------------------------------------------


def test_bad_config_lists_every_error_and_creates_nothing(tmp_path: Path) -> None:
    raw = make_config(tmp_path, max_worker=3)  # a misspelt key
    raw["head_node_type"] = "haed"
    config_file = tmp_path / "bad.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["up", str(config_file), "-y"],
                                env={"HOME": str(tmp_path / "home")})
    assert result.exit_code == 1
    assert "max_worker" in result.output and "did you mean `max_workers`" in result.output
    assert "haed" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "slots").exists() and not (tmp_path / "home").exists()


def test_commands_on_a_cluster_without_a_head_say_so(tmp_path: Path) -> None:
    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump(make_config(tmp_path, name="nohead")))
    result = CliRunner().invoke(app, ["exec", str(config_file), "true"],
                                env={"HOME": str(tmp_path / "home")})
    assert result.exit_code == 1
    assert "has no head node" in result.output and "rayctl up" in result.output
    missing = CliRunner().invoke(app, ["down", str(tmp_path / "missing.yaml"), "-y"])
    assert missing.exit_code == 1 and "cannot read" in missing.output


def test_down_after_an_interrupted_up_leaves_nothing(tmp_path: Path) -> None:
    """Ctrl-C while setup runs: the head slot and its running setup command are recorded by
    the provider, so `down` stops and removes them."""
    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump(make_config(
        tmp_path, name="cut", setup_commands=["sleep 60"])))
    env = {**os.environ, "HOME": str(tmp_path / "home"), "RAYCTL_TEMP_DIR": str(tmp_path / "t")}
    provider = LocalProvider("cut", {"state_dir": str(tmp_path / "slots")}, {})
    up = subprocess.Popen([sys.executable, "-m", "autoscaler.cli", "up", str(config_file), "-y"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _running_command(provider, "sleep 60"), 30, "setup to start")
        up.send_signal(signal.SIGINT)
        output = up.communicate(timeout=30)[0].decode()
        assert up.returncode == 130, output
        assert "rayctl down" in output
        sleeper = _running_command(provider, "sleep 60")
        down = subprocess.run([sys.executable, "-m", "autoscaler.cli", "down", str(config_file),
                               "-y"], env=env, capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        assert provider.list_instances() == []
        assert not _alive(sleeper)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        provider.terminate([i.id for i in provider.list_instances()])


def _running_command(provider: LocalProvider, command: str) -> int:
    for slot in provider.state.read().slots.values():
        for process in slot.processes:
            if command in process.command and _alive(process.pgid):
                return process.pgid
    return 0


# --- decisions (pure) ----------------------------------------------------------------------------------


def test_decide_work_follows_rays_flags() -> None:
    opts, up, down = UpOptions(), Health.RUNNING, Health.DOWN
    assert decide_work(HeadAction.REUSE, up, "h", "h", opts).nothing
    changed = decide_work(HeadAction.REUSE, up, "old", "h", opts)
    assert changed.sync_and_setup and changed.stop_first and changed.start
    dead = decide_work(HeadAction.REUSE, down, "h", "h", opts)
    assert dead.start and not dead.stop_first
    half = decide_work(HeadAction.REUSE, Health.DEGRADED, "h", "h", opts)
    assert half.stop_first and half.start  # never a second session beside the survivors
    no_restart = decide_work(HeadAction.REUSE, up, "old", "h", UpOptions(restart=False))
    assert no_restart.sync_and_setup and not no_restart.start and not no_restart.stop_first
    only = decide_work(HeadAction.REUSE, up, "h", "h", UpOptions(restart_only=True))
    assert only.sync_only and only.stop_first and only.start and not only.sync_and_setup
    fresh = decide_work(HeadAction.LAUNCH, down, "", "h", opts)
    assert fresh.sync_and_setup and fresh.start


def _instance(iid: str, node_type: str, at: float, head: bool = False) -> Instance:
    tags = {TAG_NODE_KIND: NODE_KIND_HEAD} if head else {}
    return Instance(iid, node_type, Offering("x"), ProviderState.RUNNING, tags=tags,
                    launched_at=at)


def test_down_targets_keep_min_workers_and_the_head_last() -> None:
    config = validate_config({**make_config(Path("/x")), "available_node_types": {
        "head": {"resources": {"CPU": 0}},
        "cpu": {"resources": {"CPU": 1}, "min_workers": 1, "max_workers": 2}}})
    found = [_instance("w2", "cpu", 2), _instance("h", "head", 0, head=True),
             _instance("w1", "cpu", 1)]
    keep = choose_targets(found, config, workers_only=False, keep_min_workers=True)
    assert [i.id for i in keep.kept] == ["w1"]  # the oldest
    assert [i.id for i in keep.all] == ["w2", "h"]  # workers first, head last
    only = choose_targets(found, config, workers_only=True, keep_min_workers=False)
    assert [i.id for i in only.all] == ["w1", "w2"]


def test_cloud_head_config_points_at_the_heads_copies() -> None:
    raw = {**make_config(Path("/x")), "provider": {"type": "fake"},
           "file_mounts": {"~/code": "/laptop/code"},
           "head_start_ray_commands": ["rayctl start --head --autoscaling-config=~/cfg.yaml"]}
    config = validate_config(raw)
    assert config_targets(config) == ["~/cfg.yaml"]
    shipped = head_config_dict(config, key_remote="~/k.pem", wheel_remote="~/w/r.whl")
    assert shipped["file_mounts"] == {"~/code": "~/code", "~/w/r.whl": "~/w/r.whl"}
    assert shipped["auth"]["ssh_private_key"] == "~/k.pem"
    assert "~/w/r.whl" in shipped["setup_commands"][0]


def test_what_up_ships_depends_on_where_the_heads_commands_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A head reached over SSH gets the key its runner uses and a rayctl wheel to install; a
    head whose commands run on this machine (a simulated instance) needs neither."""
    from launcher_stubs import fake_wheel
    from plugins.local_nodes import LocalNodes

    from autoscaler.launcher import ship
    from providers.ssh import runner_for

    monkeypatch.setattr(ship, "build_wheel", fake_wheel)
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    config = validate_config({**make_config(tmp_path), "provider": {"type": "fake"}})
    head = Instance("h-1", "head", Offering("x"), ProviderState.RUNNING, internal_ip="10.0.0.5")
    over_ssh = ship.prepare_shipment(config, tmp_path / "a", runner_for(
        "10.0.0.5", {"ssh_user": "ops", "ssh_private_key": str(key)}))
    remotes = [remote for remote, _ in over_ssh.mounts]
    assert (ship.KEY_REMOTE, str(key)) in over_ssh.mounts
    assert any(r.startswith(ship.WHEEL_DIR_REMOTE) for r in remotes)
    assert any("pip install" in command for command in over_ssh.setup_prefix)

    here = ship.prepare_shipment(config, tmp_path / "b",
                                 LocalNodes(tmp_path / "nodes", NAME).runner(head))
    assert [remote for remote, _ in here.mounts] == ship.config_targets(config)  # the config only
    assert here.setup_prefix == ()


def test_overrides_from_the_command_line() -> None:
    raw = make_config(Path("/x"))
    del raw["available_node_types"]["gpu"]  # --min-workers applies to every worker type
    config = validate_config(raw)
    changed = apply_overrides(config, cluster_name="other", min_workers=1, max_workers=1)
    assert changed.cluster_name == "other"
    assert changed.node_type("cpu").min_workers == 1 and changed.worker_max("cpu") == 1


def test_a_bootstrap_cached_under_another_state_dir_is_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached resolution naming another machine-local state dir (an earlier `up` with another
    RAYCTL_LOCAL_STATE_DIR) would make the head's monitor launch workers where `down` never
    looks: `up` resolves afresh instead, as `down` does."""
    from autoscaler.launcher.up import bootstrap

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAYCTL_LAUNCHER_DIR", raising=False)
    raw = make_config(tmp_path)
    config = validate_config({**raw, "provider": {"type": "local"}})  # state dir: from the env
    monkeypatch.setenv("RAYCTL_LOCAL_STATE_DIR", str(tmp_path / "earlier"))
    first, _ = bootstrap(config, use_cache=True)
    assert first.provider["state_dir"] == str(tmp_path / "earlier")
    monkeypatch.setenv("RAYCTL_LOCAL_STATE_DIR", str(tmp_path / "now"))
    again, provider = bootstrap(config, use_cache=True)
    assert again.provider["state_dir"] == str(tmp_path / "now")
    assert provider.bootstrap()["state_dir"] == str(tmp_path / "now")

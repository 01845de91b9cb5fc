"""`rayctl up` / demand / `rayctl down --purge` on "AWS" end to end: moto over HTTP stands in for
EC2 and IAM, and each instance runs as local processes in its own directory (the config's
provider is the test plug-in `LocalAWSProvider`, since moto's instances never boot). The CLI,
the head's monitor (which loads the plug-in too) and a driver are separate processes, as on a
real cluster.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from aws_cluster import (
    HEAD_TYPE,
    LIVE,
    WORKER_INSTANCE_TYPE,
    WORKER_TYPE,
    AwsCluster,
    cluster_config,
    moto_server,
    process_env,
)
from polling import wait_for

from providers.aws.iam import BOOTSTRAP_TAG, role_name
from providers.base import NODE_KIND_HEAD, NODE_KIND_WORKER, TAG_NODE_KIND, TAG_NODE_TYPE

NAME = "e2e"
MAX_WORKERS = 2
TASKS = 2  # one CPU each; the head has none, so each needs a worker


def tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsCluster]:
    root = tmp_path_factory.mktemp("aws-e2e")
    config_file = root / "aws-test.yaml"
    config_file.write_text(yaml.safe_dump(cluster_config(root, NAME, MAX_WORKERS, 3.0)))
    with moto_server() as endpoint:
        cluster = AwsCluster(root, config_file, NAME, process_env(root, endpoint))
        try:
            up = cluster.rayctl("up", str(config_file), "-y")
            assert up.returncode == 0, up.stdout + up.stderr
            yield cluster
        finally:
            cluster.stop_everything()
            shutil.rmtree(root, ignore_errors=True)


def head_record(cluster: AwsCluster) -> dict[str, str]:
    path = cluster.root / "home" / ".rayctl" / "clusters" / NAME / "head.json"
    data: dict[str, str] = json.loads(path.read_text())
    return data


def test_up_launches_a_tagged_head_with_profile_and_security_group(cluster: AwsCluster) -> None:
    [head] = cluster.instances(LIVE)
    assert tags(head)[TAG_NODE_KIND] == NODE_KIND_HEAD
    assert tags(head)[TAG_NODE_TYPE] == HEAD_TYPE
    assert tags(head)["Name"] == f"rayctl-{NAME}-head"
    assert head["InstanceType"] == "m5.large"
    profile = cluster.client("iam").get_instance_profile(InstanceProfileName=role_name(NAME))
    assert head["IamInstanceProfile"]["Arn"] == profile["InstanceProfile"]["Arn"]
    groups = cluster.client("ec2").describe_security_groups(
        Filters=[{"Name": f"tag:{BOOTSTRAP_TAG}", "Values": [NAME]}])["SecurityGroups"]
    assert [g["GroupId"] for g in groups] == [g["GroupId"] for g in head["SecurityGroups"]]
    # The head really runs: its services answer from the instance's own directory.
    assert head_record(cluster)["instance_id"] == head["InstanceId"]
    assert (cluster.root / "nodes" / head["InstanceId"] / "tmp" / "cluster_address.json").is_file()


def test_demand_launches_workers_of_the_worker_type(cluster: AwsCluster) -> None:
    record = head_record(cluster)
    from runtime.auth import read_credentials

    # aws.yaml starts the head with --tls: workers joined, and this driver reaches them, over it
    assert read_credentials(record["token_file"]).tls is not None
    script = (
        "import os, runtime as rt\n"
        f"rt.init(address={record['address']!r})\n"
        "@rt.remote(num_cpus=1)\n"
        "def where():\n"
        "    import time; time.sleep(1)\n"
        "    return os.environ.get('RAYCTL_INSTANCE_ID', '')\n"
        f"print(sorted(set(rt.get([where.remote() for _ in range({TASKS})], timeout=60))))\n"
    )
    env = {**cluster.env, "RAYCTL_TOKEN_FILE": record["token_file"]}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    ran_on = set(json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"')))
    workers = {i["InstanceId"]: i for i in cluster.instances()
               if tags(i)[TAG_NODE_KIND] == NODE_KIND_WORKER}
    assert 1 <= len(workers) <= MAX_WORKERS
    assert ran_on and ran_on <= set(workers), f"tasks ran on {ran_on}, workers {set(workers)}"
    for worker in workers.values():
        assert tags(worker)[TAG_NODE_TYPE] == WORKER_TYPE
        assert worker["InstanceType"] == WORKER_INSTANCE_TYPE
        assert "IamInstanceProfile" not in worker  # only the head may call EC2


def test_idle_workers_are_terminated(cluster: AwsCluster) -> None:
    """idle_timeout_s is 3: once the tasks are done the monitor gives the workers back."""
    def only_head() -> bool:
        live = cluster.instances(LIVE)
        return len(live) == 1 and tags(live[0])[TAG_NODE_KIND] == NODE_KIND_HEAD

    wait_for(only_head, 45, "idle workers to be terminated in EC2")
    workers = [d for d in cluster.node_dirs() if d.name != head_record(cluster)["instance_id"]]
    assert workers, "the worker instances never ran anything here"
    # A terminated instance takes its processes with it (as a VM would).
    wait_for(lambda: not any(cluster.pids(d) for d in workers), 10, "worker processes to end")


def test_down_terminates_everything_and_purge_removes_bootstrap(cluster: AwsCluster) -> None:
    assert cluster.pids() and cluster.shm_dirs(), "the head should run before down"
    down = cluster.rayctl("down", str(cluster.config_file), "-y")
    assert down.returncode == 0, down.stdout + down.stderr
    assert cluster.instances(["pending", "running"]) == []
    wait_for(lambda: not cluster.pids(), 10, "no process of the cluster left")
    assert cluster.shm_dirs() == []
    ec2, iam = cluster.client("ec2"), cluster.client("iam")
    assert ec2.describe_key_pairs(
        Filters=[{"Name": f"tag:{BOOTSTRAP_TAG}", "Values": [NAME]}])["KeyPairs"]  # kept

    purged = cluster.rayctl("down", str(cluster.config_file), "-y", "--purge")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    owned = [{"Name": f"tag:{BOOTSTRAP_TAG}", "Values": [NAME]}]
    assert ec2.describe_security_groups(Filters=owned)["SecurityGroups"] == []
    assert ec2.describe_key_pairs(Filters=owned)["KeyPairs"] == []
    assert not list((cluster.root / "keys").glob("*.pem"))
    names = [p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]]
    assert role_name(NAME) not in names
    assert role_name(NAME) not in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert cluster.instances(LIVE) == []


def test_purge_is_refused_with_workers_only(cluster: AwsCluster) -> None:
    ran = cluster.rayctl("down", str(cluster.config_file), "-y", "--purge", "--workers-only")
    assert ran.returncode == 2 and "--purge" in ran.stderr

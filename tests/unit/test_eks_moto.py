"""EKS node groups (module_utils + module) and the eks_multi_az preflight against moto_server.

moto's standalone server runs on 127.50.0.1 for this module only (started and
stopped here, fixtures/moto/moto_lab.py). Every client gets the endpoint
explicitly, and the environment carries AWS_ENDPOINT_URL, dummy credentials
and a dead proxy for any other host: nothing here can reach AWS.

moto 5.2.5 implements the EKS cluster and node group APIs but not the add-on
APIs (CreateAddon, DescribeAddon, UpdateAddon, DeleteAddon, ListAddons,
DescribeAddonVersions answer 404), and it tags clusters only (TagResource on a
node group answers NotFound); test_moto_still_lacks_the_addon_apis pins the
first. Add-ons and tag changes are tested with botocore's Stubber in
test_eks_addon_stubbed.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.hastack.ha.plugins.module_utils.eks import (
    EksError,
    NodegroupSpec,
    describe_nodegroup,
    ensure_nodegroup,
    remove_nodegroup,
)
from ansible_collections.hastack.ha.plugins.modules import eks_managed_nodegroup
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "moto"))
from moto_lab import HOST, REGION, aws_env, moto_server

REPO = Path(__file__).resolve().parents[2]
CLUSTER = "ut"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url, pytest.MonkeyPatch.context() as mp:
        for name, value in aws_env(url).items():
            mp.setenv(name, value)
        yield url


def client(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


@pytest.fixture(scope="module")
def cluster(endpoint: str) -> dict[str, Any]:
    """A VPC with two subnets and an EKS cluster (made directly with boto3)."""
    ec2 = client(endpoint, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for i, zone in enumerate("ab")
    ]
    role = "arn:aws:iam::123456789012:role/ut-node"
    client(endpoint, "eks").create_cluster(
        name=CLUSTER, roleArn="arn:aws:iam::123456789012:role/ut-cluster", resourcesVpcConfig={"subnetIds": subnets}
    )
    return {"subnets": subnets, "role": role}


def spec(cluster: dict[str, Any], name: str = "ng-a", **extra: Any) -> NodegroupSpec:
    wanted = {
        "cluster": CLUSTER,
        "name": name,
        "node_role": cluster["role"],
        "subnets": cluster["subnets"][:1],
        "min_size": 1,
        "max_size": 3,
        "desired_size": 1,
        "labels": {"zone": "a"},
        "tags": {"project": "ut"},
    }
    return NodegroupSpec(**(wanted | extra))


def test_moto_still_lacks_the_addon_apis(endpoint: str) -> None:
    """When this fails, moto gained add-ons: test the eks_addon module against it instead of the Stubber."""
    eks = client(endpoint, "eks")
    for call in (
        lambda: eks.create_addon(clusterName=CLUSTER, addonName="coredns"),
        lambda: eks.describe_addon(clusterName=CLUSTER, addonName="coredns"),
        lambda: eks.describe_addon_versions(),
    ):
        with pytest.raises(ClientError) as raised:
            call()
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_nodegroup_create_rerun_scale_and_delete(endpoint: str, cluster: dict[str, Any]) -> None:
    eks = client(endpoint, "eks")
    plan, created = ensure_nodegroup(eks, spec(cluster), delay=0)
    assert plan.actions() == ["create"]
    assert created["status"] == "ACTIVE"
    assert created["scalingConfig"] == {"minSize": 1, "maxSize": 3, "desiredSize": 1}
    assert created["labels"] == {"zone": "a"}
    assert created["amiType"] == "AL2023_x86_64_STANDARD"

    plan, _ = ensure_nodegroup(eks, spec(cluster), delay=0)
    assert not plan.changed, plan

    plan, scaled = ensure_nodegroup(eks, spec(cluster, desired_size=2), delay=0)
    assert plan.actions() == ["update scalingConfig"]
    assert scaled["scalingConfig"]["desiredSize"] == 2
    assert not ensure_nodegroup(eks, spec(cluster, desired_size=2), delay=0)[0].changed

    # desired size owned by an autoscaler: kept as found, only moved into min..max
    assert not ensure_nodegroup(eks, spec(cluster, desired_size=None), delay=0)[0].changed
    plan, clamped = ensure_nodegroup(eks, spec(cluster, desired_size=None, min_size=3, max_size=4), delay=0)
    assert plan.update == {"scalingConfig": {"minSize": 3, "maxSize": 4, "desiredSize": 3}}
    assert clamped["scalingConfig"] == {"minSize": 3, "maxSize": 4, "desiredSize": 3}

    plan, relabelled = ensure_nodegroup(
        eks, spec(cluster, min_size=3, max_size=4, desired_size=3, labels={"zone": "a2", "new": "x"}), delay=0
    )
    assert plan.actions() == ["update labels"]
    assert plan.update["labels"] == {"addOrUpdateLabels": {"zone": "a2", "new": "x"}}
    assert relabelled["labels"] == {"zone": "a2", "new": "x"}

    # Tag changes are planned (see test_eks_addon_stubbed.py) but not applied here: moto 5.2.5
    # tags clusters only (TagResource/UntagResource on a node group ARN answer NotFound).
    assert remove_nodegroup(eks, CLUSTER, "ng-a", delay=0) is True
    assert describe_nodegroup(eks, CLUSTER, "ng-a") is None
    assert remove_nodegroup(eks, CLUSTER, "ng-a", delay=0) is False


def test_nodegroup_refuses_to_change_what_eks_cannot_change(endpoint: str, cluster: dict[str, Any]) -> None:
    eks = client(endpoint, "eks")
    ensure_nodegroup(eks, spec(cluster, name="ng-b"), delay=0)
    with pytest.raises(EksError, match=r"ng-b .*cannot change in place: instance_types: .*'m5.large'"):
        ensure_nodegroup(eks, spec(cluster, name="ng-b", instance_types=["m5.large"]), delay=0)
    with pytest.raises(EksError, match=r"subnets: "):
        ensure_nodegroup(eks, spec(cluster, name="ng-b", subnets=cluster["subnets"][1:]), delay=0)
    assert describe_nodegroup(eks, CLUSTER, "ng-b")["instanceTypes"] == ["t3.large"]
    remove_nodegroup(eks, CLUSTER, "ng-b", delay=0)


def run_module(capsys: pytest.CaptureFixture[str], args: dict[str, Any]) -> dict[str, Any]:
    with patch_module_args(args), pytest.raises(SystemExit):
        eks_managed_nodegroup.main()
    return json.loads(capsys.readouterr().out)


def test_module_check_mode_changes_nothing(capsys, endpoint: str, cluster: dict[str, Any]) -> None:
    args = {
        "cluster_name": CLUSTER,
        "name": "ng-c",
        "node_role": cluster["role"],
        "subnets": cluster["subnets"][:1],
        "desired_size": 2,
        "endpoint_url": endpoint,
        "region": REGION,
        "wait_delay": 1,
    }
    result = run_module(capsys, args | {"_ansible_check_mode": True})
    assert result["changed"] is True and result["actions"] == ["create"], result
    assert describe_nodegroup(client(endpoint, "eks"), CLUSTER, "ng-c") is None

    result = run_module(capsys, args)
    assert result["changed"] is True and result["nodegroup"]["scalingConfig"]["desiredSize"] == 2, result
    result = run_module(capsys, args | {"desired_size": 3, "_ansible_check_mode": True})
    assert result["actions"] == ["update scalingConfig"], result
    assert result["nodegroup"]["scalingConfig"]["desiredSize"] == 2
    result = run_module(capsys, args)
    assert result["changed"] is False, result

    result = run_module(capsys, args | {"min_size": 2, "desired_size": 1})
    assert result["failed"] and "1 <= min_size <= desired_size <= max_size" in result["msg"]

    result = run_module(capsys, {k: args[k] for k in ("cluster_name", "name", "endpoint_url", "region")} | {
        "state": "absent"})  # fmt: skip
    assert result["changed"] is True and result["actions"] == ["delete"]


# --- the role's preflight: rejects bad input, names the variable, creates nothing ---

GOOD_ZONES = [
    {"az": "eu-west-1a", "cidr": "10.40.0.0/19"},
    {"az": "eu-west-1b", "cidr": "10.40.32.0/19"},
    {"az": "eu-west-1c", "cidr": "10.40.64.0/19"},
]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"eks_multi_az_zones": [*GOOD_ZONES[:2], {"az": "eu-west-1a", "cidr": "10.40.64.0/19"}]},
         r"eks_multi_az_zones names the zones .*at least 3 entries, each a distinct availability zone"),
        ({"eks_multi_az_zones": [*GOOD_ZONES[:2], {"az": "eu-west-1c", "cidr": "10.41.0.0/19"}]},
         r"eks_multi_az_zones\[eu-west-1c\]\.cidr 10\.41\.0\.0/19 is not inside eks_multi_az_vpc_cidr"),
        ({"eks_multi_az_zones": [*GOOD_ZONES[:2], {"az": "eu-west-1c", "cidr": "10.40.48.0/20"}]},
         r"eks_multi_az_zones\[eu-west-1c\]\.cidr 10\.40\.48\.0/20 overlaps eks_multi_az_zones\[eu-west-1b\]"),
        ({"eks_multi_az_nodegroup_min_size": 0},
         r"min_size=0, .*eks_multi_az_nodegroup_min_size.*Rule: 1 <= min <= desired <= max"),
        ({"eks_multi_az_zones": [*GOOD_ZONES[:2], GOOD_ZONES[2] | {"desired_size": 5}]},
         r"zone eu-west-1c: min_size=1, desired_size=5, max_size=3"),
    ],
    ids=["same-zone-twice", "subnet-outside-vpc", "overlap", "min-zero", "desired-above-max"],
)  # fmt: skip
def test_preflight_rejects_bad_input_and_creates_nothing(endpoint: str, extra: dict[str, Any], message: str) -> None:
    variables = {
        "ha_platform": "kubernetes",
        "eks_multi_az_cluster_name": "pf",
        "eks_multi_az_region": REGION,
        "eks_multi_az_endpoint_url": endpoint,
        "eks_multi_az_addons": [],
        "eks_multi_az_kubeconfig_path": "/nonexistent/never-written",
    } | extra
    env = aws_env(endpoint) | {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-playbook"), "playbooks/eks.yml", "-e", json.dumps(variables)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = re.sub(r"\s+", " ", proc.stdout + proc.stderr)
    assert proc.returncode != 0, output[-3000:]
    assert re.search(message, output), output[-3000:]
    assert "changed=0" in output
    vpcs = client(endpoint, "ec2").describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["pf"]}])["Vpcs"]
    assert vpcs == []
    roles = [r["RoleName"] for r in client(endpoint, "iam").list_roles()["Roles"]]
    assert not [r for r in roles if r.startswith("pf-")]
    assert "pf" not in client(endpoint, "eks").list_clusters()["clusters"]


# --- every AWS call of the role is pointed at the role's endpoint ---------------

AWS_MODULE = re.compile(r"^(amazon\.aws|community\.aws)\.|^hastack\.ha\.eks_")


def test_every_aws_task_of_the_role_takes_region_and_endpoint() -> None:
    import yaml

    def tasks(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for task in items or []:
            yield task
            yield from tasks(task.get("block", []))

    seen = 0
    for path in sorted((REPO / "roles" / "eks_multi_az" / "tasks").glob("*.yml")):
        for task in tasks(yaml.safe_load(path.read_text())):
            for key, args in task.items():
                if AWS_MODULE.match(key):
                    seen += 1
                    where = f"{path.name}: {task.get('name')}"
                    assert args.get("endpoint_url") == "{{ eks_multi_az_endpoint_url or omit }}", where
                    assert args.get("region") == "{{ eks_multi_az_region }}", where
    assert seen >= 15


def test_a_call_to_real_aws_is_refused_on_loopback(endpoint: str) -> None:
    """The guard of every moto run: a call aimed at AWS itself goes to the dead proxy on HOST."""
    from botocore.config import Config
    from botocore.exceptions import ProxyConnectionError

    assert endpoint.startswith(f"http://{HOST}:")
    aws = boto3.client(
        "eks", region_name=REGION, endpoint_url=f"https://eks.{REGION}.amazonaws.com",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )  # fmt: skip
    with pytest.raises(ProxyConnectionError, match=rf"{HOST}:9"):
        aws.list_clusters()

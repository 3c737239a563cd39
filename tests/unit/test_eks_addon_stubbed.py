"""The add-on logic (hastack.ha.eks_addon / module_utils.eks) with botocore's Stubber.

STUBBED, not emulated: moto 5.2.5 has no EKS add-on API (CreateAddon,
DescribeAddon, UpdateAddon, DeleteAddon answer 404 from moto_server; see
test_eks_moto.py::test_moto_still_lacks_the_addon_apis), and it cannot tag
node groups. So these tests feed recorded-shape responses to a real botocore
client, one call at a time: the Stubber checks every request against the EKS
service model (parameter names and types) and that exactly the expected calls
happen, in order. They test our decisions (what to call, when to wait, what
fails), not EKS.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from ansible_collections.hastack.ha.plugins.module_utils.eks import (
    AddonSpec,
    EksError,
    NodegroupSpec,
    addon_plan,
    apply_tags,
    ensure_addon,
    nodegroup_plan,
    remove_addon,
    tags_plan,
    wait_for,
)
from botocore.stub import Stubber

CLUSTER = "prod"
ARN = "arn:aws:eks:eu-west-1:123456789012:addon/prod/coredns/abcd"


def addon(status: str = "ACTIVE", version: str = "v1.11.4-eksbuild.2", **extra: Any) -> dict[str, Any]:
    return {"addon": {"addonName": "coredns", "clusterName": CLUSTER, "status": status, "addonVersion": version,
                      "addonArn": ARN, "tags": {"project": "hastack"}, "health": {"issues": []}} | extra}  # fmt: skip


def not_found(stub: Stubber, method: str = "describe_addon") -> None:
    stub.add_client_error(method, service_error_code="ResourceNotFoundException", http_status_code=404)


@pytest.fixture
def eks() -> Iterator[tuple[Any, Stubber]]:
    # No endpoint is ever contacted: the Stubber answers before any request is sent.
    client = boto3.client(
        "eks", region_name="eu-west-1", endpoint_url="http://127.50.0.1:9",
        aws_access_key_id="stub", aws_secret_access_key="stub",
    )  # fmt: skip
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def describe(stub: Stubber, response: dict[str, Any]) -> None:
    stub.add_response("describe_addon", response, {"clusterName": CLUSTER, "addonName": "coredns"})


def test_install_creates_then_waits_until_active(eks) -> None:
    client, stub = eks
    not_found(stub)
    stub.add_response(
        "create_addon",
        addon("CREATING"),
        {
            "clusterName": CLUSTER,
            "addonName": "coredns",
            "resolveConflicts": "OVERWRITE",
            "tags": {"project": "hastack"},
        },
    )
    describe(stub, addon("CREATING"))
    describe(stub, addon("ACTIVE"))
    plan, after = ensure_addon(client, AddonSpec(CLUSTER, "coredns", tags={"project": "hastack"}), delay=0)
    assert plan.actions() == ["create"]
    assert after["status"] == "ACTIVE"


def test_rerun_only_describes(eks) -> None:
    client, stub = eks
    describe(stub, addon())
    plan, after = ensure_addon(client, AddonSpec(CLUSTER, "coredns", tags={"project": "hastack"}), delay=0)
    assert not plan.changed
    assert after["addonVersion"] == "v1.11.4-eksbuild.2"


def test_check_mode_only_describes(eks) -> None:
    client, stub = eks
    not_found(stub)
    plan, after = ensure_addon(client, AddonSpec(CLUSTER, "coredns"), check_mode=True)
    assert plan.actions() == ["create"] and after is None


def test_new_version_updates_in_place(eks) -> None:
    client, stub = eks
    describe(stub, addon())
    stub.add_response(
        "update_addon",
        {"update": {"id": "u1", "status": "InProgress", "type": "VersionUpdate"}},
        {"clusterName": CLUSTER, "addonName": "coredns", "addonVersion": "v1.12.1-eksbuild.1",
         "resolveConflicts": "OVERWRITE"},
    )  # fmt: skip
    describe(stub, addon("UPDATING"))
    describe(stub, addon("ACTIVE", version="v1.12.1-eksbuild.1"))
    spec = AddonSpec(CLUSTER, "coredns", version="v1.12.1-eksbuild.1", tags={"project": "hastack"})
    plan, after = ensure_addon(client, spec, delay=0)
    assert plan.actions() == ["update addonVersion"]
    assert after["addonVersion"] == "v1.12.1-eksbuild.1"


def test_configuration_is_compared_as_json(eks) -> None:
    client, stub = eks
    describe(stub, addon(configurationValues='{"replicaCount":3}'))
    spec = AddonSpec(CLUSTER, "coredns", configuration_values='{ "replicaCount": 3 }', tags={"project": "hastack"})
    assert not ensure_addon(client, spec, delay=0)[0].changed


def test_degraded_addon_fails_with_the_health_issue(eks) -> None:
    client, stub = eks
    not_found(stub)
    stub.add_response("create_addon", addon("CREATING"))
    issue = {"code": "InsufficientNumberOfReplicas", "message": "The add-on is unhealthy: no node to run on"}
    describe(stub, addon("DEGRADED", health={"issues": [issue]}))
    with pytest.raises(EksError, match=r"add-on coredns of cluster prod is DEGRADED: .*no node to run on"):
        ensure_addon(client, AddonSpec(CLUSTER, "coredns", tags={"project": "hastack"}), delay=0)


def test_remove_deletes_and_waits_until_gone(eks) -> None:
    client, stub = eks
    describe(stub, addon())
    stub.add_response("delete_addon", addon("DELETING"), {"clusterName": CLUSTER, "addonName": "coredns"})
    describe(stub, addon("DELETING"))
    not_found(stub)
    assert remove_addon(client, CLUSTER, "coredns", delay=0) is True


def test_remove_of_an_absent_addon_does_nothing(eks) -> None:
    client, stub = eks
    not_found(stub)
    assert remove_addon(client, CLUSTER, "coredns", delay=0) is False


def test_tag_changes_untag_then_tag(eks) -> None:
    client, stub = eks
    describe(stub, addon())
    stub.add_response("untag_resource", {}, {"resourceArn": ARN, "tagKeys": ["project"]})
    stub.add_response("tag_resource", {}, {"resourceArn": ARN, "tags": {"team": "db"}})
    describe(stub, addon(tags={"team": "db"}))
    plan, _ = ensure_addon(client, AddonSpec(CLUSTER, "coredns", tags={"team": "db"}), delay=0)
    assert plan.actions() == ["tag"]


def test_apply_tags_without_changes_calls_nothing(eks) -> None:
    client, _ = eks
    apply_tags(client, ARN, {}, [])


# --- pure planning ------------------------------------------------------------


def test_addon_options_left_out_are_not_compared() -> None:
    current = addon(serviceAccountRoleArn="arn:aws:iam::1:role/x", configurationValues="{}")["addon"]
    assert not addon_plan(current, AddonSpec(CLUSTER, "coredns", tags={"project": "hastack"})).changed


def test_tags_plan() -> None:
    assert tags_plan({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"}) == ({"b": "3", "c": "4"}, [])
    assert tags_plan({"a": "1", "z": "0"}, {}) == ({}, ["a", "z"])


NODEGROUP = {
    "nodegroupName": "ng", "clusterName": CLUSTER, "status": "ACTIVE", "nodeRole": "arn:r",
    "subnets": ["s-2", "s-1"], "instanceTypes": ["t3.large"], "amiType": "AL2023_x86_64_STANDARD",
    "diskSize": 50, "capacityType": "ON_DEMAND", "labels": {}, "tags": {},
    "scalingConfig": {"minSize": 1, "maxSize": 3, "desiredSize": 2},
}  # fmt: skip


def ng_spec(**extra: Any) -> NodegroupSpec:
    wanted = {"cluster": CLUSTER, "name": "ng", "node_role": "arn:r", "subnets": ["s-1", "s-2"], "min_size": 1,
              "max_size": 3, "desired_size": 2}  # fmt: skip
    return NodegroupSpec(**(wanted | extra))


def test_nodegroup_plan_ignores_subnet_order_and_a_missing_update_config() -> None:
    # moto leaves updateConfig out; EKS reports maxUnavailable 1 for a group created without it
    assert not nodegroup_plan(NODEGROUP, ng_spec()).changed
    assert nodegroup_plan(NODEGROUP, ng_spec(max_unavailable=2)).update == {"updateConfig": {"maxUnavailable": 2}}


def test_nodegroup_plan_sees_changed_label_values_and_removed_labels() -> None:
    current = NODEGROUP | {"labels": {"zone": "a", "old": "x"}}
    plan = nodegroup_plan(current, ng_spec(labels={"zone": "b"}))
    assert plan.update == {"labels": {"addOrUpdateLabels": {"zone": "b"}, "removeLabels": ["old"]}}


def test_nodegroup_plan_lists_every_immutable_change() -> None:
    plan = nodegroup_plan(NODEGROUP, ng_spec(ami_type="BOTTLEROCKET_x86_64", disk_size=80))
    assert [line.split(":")[0] for line in plan.immutable] == ["ami_type", "disk_size"]


def test_autoscaler_owned_size_is_kept_within_bounds() -> None:
    assert ng_spec(desired_size=None).scaling(2)["desiredSize"] == 2
    assert ng_spec(desired_size=None).scaling(7)["desiredSize"] == 3
    assert ng_spec(desired_size=None, min_size=2).scaling(None)["desiredSize"] == 2


def test_wait_for_gives_up_at_the_deadline() -> None:
    slept: list[float] = []
    with pytest.raises(EksError, match=r"coredns: not settled after 0 s \(last state: CREATING\)"):
        wait_for(lambda: {"status": "CREATING"}, lambda obj: False, "coredns", timeout=0, delay=5, sleep=slept.append)
    assert slept == []

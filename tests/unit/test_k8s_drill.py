"""Kubernetes drill disruptions (module_utils/k8s_drill) on k8s_info-shaped objects.

Uses fixtures/k8s/live/ (3 zones x 2 nodes, the Patroni pods) plus a
DaemonSet pod and a static (mirror) pod on the primary's node, as a drain
finds them on EKS. The requests are built, never sent: no cluster here.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.hastack.ha.plugins.module_utils.k8s_drill import (
    DrillTargetError,
    cordon_request,
    drain_plan,
    eviction_outcome,
    kill_request,
    nodes_in_zone,
    pod_with_label,
    pods_in_zone,
)

LIVE = Path(__file__).resolve().parent / "fixtures" / "k8s" / "live"


def live(name: str) -> dict[str, Any]:
    return json.loads((LIVE / f"{name}.json").read_text(encoding="utf-8"))


def extra_pods(node_name: str) -> list[dict[str, Any]]:
    """aws-node (DaemonSet) and a static pod on the node, as on an EKS worker."""
    aws_node = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "aws-node-7k2xq",
            "namespace": "kube-system",
            "uid": "5f0c3a6e-2b1d-4c8e-9a7f-0d1e2f3a4b5c",
            "labels": {"k8s-app": "aws-node", "controller-revision-hash": "6c9d8f7b5"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "aws-node", "controller": True, "uid": "d1"}
            ],
        },
        "spec": {"nodeName": node_name},
        "status": {"phase": "Running"},
    }
    static = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"node-probe-{node_name}",
            "namespace": "kube-system",
            "uid": "0b9a8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d",
            "annotations": {"kubernetes.io/config.mirror": "5e1f0c2d", "kubernetes.io/config.source": "file"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name, "controller": True}],
        },
        "spec": {"nodeName": node_name},
        "status": {"phase": "Running"},
    }
    return [aws_node, static]


def test_nodes_and_pods_of_a_zone() -> None:
    data = live("healthy")
    nodes = nodes_in_zone(data["nodes"], "eu-west-1b")
    assert [n["metadata"]["name"] for n in nodes] == [
        "ip-10-0-2-11.eu-west-1.compute.internal",
        "ip-10-0-2-12.eu-west-1.compute.internal",
    ]
    assert [p["metadata"]["name"] for p in pods_in_zone(data["pods"], data["nodes"], "eu-west-1b")] == ["hastack-1"]


def test_terminating_pods_are_not_targets() -> None:
    data = live("pending")  # hastack-1 in zone b is terminating
    assert pods_in_zone(data["pods"], data["nodes"], "eu-west-1b") == []


def test_unknown_zone_names_the_zones_there_are() -> None:
    expected = "no node in zone 'eu-west-1d'; zones with nodes: eu-west-1a, eu-west-1b"
    with pytest.raises(DrillTargetError, match=expected):
        nodes_in_zone(live("healthy")["nodes"], "eu-west-1d")


def test_the_primary_is_the_pod_patroni_labelled() -> None:
    data = live("healthy")
    assert pod_with_label(data["pods"], "role", "primary")["metadata"]["name"] == "hastack-0"
    pods = copy.deepcopy(data["pods"]["resources"])
    pods[1]["metadata"]["labels"]["role"] = "primary"
    with pytest.raises(DrillTargetError, match="found 2: hastack-0, hastack-1"):
        pod_with_label(pods, "role", "primary")


def test_kill_is_a_delete_with_grace_zero_of_that_very_pod() -> None:
    primary = pod_with_label(live("healthy")["pods"], "role", "primary")
    request = kill_request(primary)
    assert request["method"] == "DELETE"
    assert request["path"] == "/api/v1/namespaces/hastack/pods/hastack-0"
    assert request["body"]["gracePeriodSeconds"] == 0
    assert request["body"]["preconditions"] == {"uid": primary["metadata"]["uid"]}


def test_drain_cordons_then_evicts_only_what_drain_evicts() -> None:
    data = live("healthy")
    node = nodes_in_zone(data["nodes"], "eu-west-1a")[0]
    pods = data["pods"]["resources"] + extra_pods(node["metadata"]["name"])
    assert cordon_request(node)["body"] == {"spec": {"unschedulable": True}}
    plan = drain_plan(node, pods)
    assert [e["path"] for e in plan.evict] == ["/api/v1/namespaces/hastack/pods/hastack-0/eviction"]
    assert plan.evict[0]["body"] == {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "hastack-0", "namespace": "hastack"},
    }
    assert plan.skipped == [
        ("kube-system/aws-node-7k2xq", "DaemonSet pod"),
        ("kube-system/node-probe-ip-10-0-1-11.eu-west-1.compute.internal", "mirror (static) pod"),
    ]


def test_drain_of_an_empty_node_evicts_nothing() -> None:
    data = live("healthy")
    node = nodes_in_zone(data["nodes"], "eu-west-1a")[1]
    assert drain_plan(node, data["pods"]).evict == []


PDB_429 = {"reason": "TooManyRequests", "message": "Cannot evict pod as it would violate the pod's disruption budget."}
TWO_PDBS = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (201, None, "evicted"),
        (429, PDB_429, "retry"),
        (404, None, "gone"),
        (500, {"message": TWO_PDBS}, f"error: HTTP 500 {TWO_PDBS}"),
    ],
)
def test_eviction_outcome(status: int, body: dict[str, Any] | None, outcome: str) -> None:
    assert eviction_outcome(status, body) == outcome

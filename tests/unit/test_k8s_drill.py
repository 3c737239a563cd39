"""Kubernetes drill disruptions (module_utils/k8s_drill) on k8s_info-shaped objects.

Uses fixtures/k8s/live/ (3 zones x 2 nodes, the Patroni pods) plus a
DaemonSet pod and a static (mirror) pod on the primary's node, as a drain
finds them on EKS; zone_cluster() adds what a zone outage meets there:
Redis, Sentinel and app pods over the zones, a node of a multi-zone node
group in zone a, DaemonSet pods on every node, a terminating and an evicted
(Failed) pod. The requests are built, never sent: no cluster here.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
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
    zone_kill_plan,
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


ZONE_A = ["ip-10-0-1-11.eu-west-1.compute.internal", "ip-10-0-1-12.eu-west-1.compute.internal"]
SYSTEM_NODE = "ip-10-0-1-31.eu-west-1.compute.internal"
HASTACK = {"app.kubernetes.io/instance": "hastack", "app.kubernetes.io/part-of": "hastack"}
# (namespace, name) of the DaemonSets on every node: hastack's node-exporter and EKS's add-ons
DAEMONS = [
    ("hastack-node-exporter", "hastack-node-exporter"),
    ("kube-system", "aws-node"),
    ("kube-system", "kube-proxy"),
]


def system_node() -> dict[str, Any]:
    """A node of a node group over all three zones (add-ons), in zone a: not in hastack-eu-west-1a."""
    node = copy.deepcopy(live("healthy")["nodes"]["resources"][0])
    meta = node["metadata"]
    meta["labels"] |= {"eks.amazonaws.com/nodegroup": "hastack-system", "kubernetes.io/hostname": SYSTEM_NODE}
    meta["annotations"]["alpha.kubernetes.io/provided-node-ip"] = "10.0.1.31"
    meta |= {"name": SYSTEM_NODE, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, SYSTEM_NODE))}
    node["spec"]["providerID"] = "aws:///eu-west-1a/i-0c41d7e9a2b3f5a68"
    node["status"]["addresses"] = [
        {"type": "InternalIP", "address": "10.0.1.31"},
        {"type": "InternalDNS", "address": SYSTEM_NODE},
        {"type": "Hostname", "address": SYSTEM_NODE},
    ]
    return node


def pod_on(node: str, namespace: str, name: str, owner: tuple[str, str], labels: dict[str, str]) -> dict[str, Any]:
    """A running pod as the API server lists it, owned by a controller (kind, name)."""
    kind, owner_name = owner
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{name}")),
            "creationTimestamp": "2026-11-26T08:31:00Z",
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": kind,
                    "name": owner_name,
                    "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}/{namespace}/{owner_name}")),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"nodeName": node, "schedulerName": "default-scheduler"},
        "status": {"phase": "Running", "qosClass": "Burstable", "startTime": "2026-11-26T08:31:04Z"},
    }


def _stateful(component: str, name: str, index: int, node: str) -> dict[str, Any]:
    labels = HASTACK | {
        "app.kubernetes.io/name": component,
        "apps.kubernetes.io/pod-index": str(index),
        "controller-revision-hash": f"{name}-6f8b9c7d5c",
        "statefulset.kubernetes.io/pod-name": f"{name}-{index}",
    }
    return pod_on(node, "hastack", f"{name}-{index}", ("StatefulSet", name), labels)


def _app(replica_set: str, suffix: str, node: str) -> dict[str, Any]:
    labels = HASTACK | {"app.kubernetes.io/name": "app-backend", "pod-template-hash": replica_set.rsplit("-", 1)[1]}
    return pod_on(node, "hastack", f"{replica_set}-{suffix}", ("ReplicaSet", replica_set), labels)


def daemon_pod(namespace: str, name: str, labels: dict[str, str], node: str) -> dict[str, Any]:
    labels = labels | {"controller-revision-hash": "7d9c5b8f4", "pod-template-generation": "1"}
    suffix = uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{node}").hex[:5]
    return pod_on(node, namespace, f"{name}-{suffix}", ("DaemonSet", name), labels)


def zone_cluster() -> dict[str, list[dict[str, Any]]]:
    """3 zones on EKS: the live fixture's 6 nodes plus SYSTEM_NODE; Patroni, Redis, Sentinel
    and app pods spread over the zones; node-exporter, aws-node and kube-proxy (DaemonSets) on
    every node; CoreDNS; a static pod; an app pod terminating (old ReplicaSet) and one evicted
    by the kubelet (Failed), both in zone a."""
    data = live("healthy")
    nodes = [*data["nodes"]["resources"], system_node()]
    a1, a2, b1, b2, c1, c2 = (n["metadata"]["name"] for n in data["nodes"]["resources"])
    pods = list(data["pods"]["resources"])  # hastack-0 on a1 (primary), -1 on b1, -2 on c1
    pods += [_stateful("redis", "hastack-redis", i, n) for i, n in enumerate([a2, b2, c2])]
    pods += [_stateful("redis-sentinel", "hastack-sentinel", i, n) for i, n in enumerate([a1, b1, c1])]
    pods += [_app("hastack-app-7c9f8d6b5d", s, n) for s, n in [("4xk2p", SYSTEM_NODE), ("m8r5t", b2), ("q9w3z", c2)]]
    old = _app("hastack-app-5b8d7c6f4e", "h2j7k", a1)
    old["metadata"] |= {"deletionTimestamp": "2026-11-26T09:20:11Z", "deletionGracePeriodSeconds": 30}
    evicted = _app("hastack-app-7c9f8d6b5d", "zz9k1", a2)
    evicted["status"] = {
        "phase": "Failed",
        "reason": "Evicted",
        "message": "The node was low on resource: ephemeral-storage. ",
    }
    pods += [old, evicted]
    labels = {"hastack-node-exporter": HASTACK | {"app.kubernetes.io/name": "node-exporter"},
              "aws-node": {"k8s-app": "aws-node"}, "kube-proxy": {"k8s-app": "kube-proxy"}}  # fmt: skip
    pods += [daemon_pod(ns, name, labels[name], n["metadata"]["name"]) for n in nodes for ns, name in DAEMONS]
    dns = {"k8s-app": "kube-dns", "eks.amazonaws.com/component": "coredns", "pod-template-hash": "5b9dd8f4c7"}
    dns_rs = ("ReplicaSet", "coredns-5b9dd8f4c7")
    pods += [
        pod_on(n, "kube-system", f"coredns-5b9dd8f4c7-{s}", dns_rs, dns)
        for s, n in [("7wq2n", SYSTEM_NODE), ("kx4pd", b1)]
    ]
    pods.append(extra_pods(a1)[1])  # the static (mirror) pod
    return {"nodes": nodes, "pods": pods}


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


def test_unknown_zone_names_the_label_and_the_zones_there_are() -> None:
    expected = (
        "no node in zone 'eu-west-1d' (label topology.kubernetes.io/zone); "
        "zones with nodes: eu-west-1a, eu-west-1b, eu-west-1c"
    )
    with pytest.raises(DrillTargetError, match=f"^{re.escape(expected)}$"):
        nodes_in_zone(live("healthy")["nodes"], "eu-west-1d")
    # the zone-id and the node group name are not zones
    for other in ("euw1-az1", "hastack-eu-west-1a"):
        with pytest.raises(DrillTargetError, match=f"no node in zone '{other}'"):
            nodes_in_zone(live("healthy")["nodes"], other)


def test_a_zone_is_every_node_labelled_with_it_whatever_its_node_group() -> None:
    nodes = zone_cluster()["nodes"]
    assert [n["metadata"]["name"] for n in nodes_in_zone(nodes, "eu-west-1a")] == [*ZONE_A, SYSTEM_NODE]


def test_zone_kill_plan_is_every_pod_on_the_zones_nodes_but_what_a_drain_leaves() -> None:
    cluster = zone_cluster()
    hastack = [p for p in cluster["pods"] if p["metadata"]["namespace"] == "hastack"]
    plan = zone_kill_plan(cluster["nodes"], hastack, "eu-west-1a")
    assert plan.nodes == [*ZONE_A, SYSTEM_NODE]
    assert [p["metadata"]["name"] for p in plan.kill] == [
        "hastack-0",
        "hastack-redis-0",
        "hastack-sentinel-0",
        "hastack-app-7c9f8d6b5d-4xk2p",
    ]
    assert plan.skipped == [
        ("hastack/hastack-app-5b8d7c6f4e-h2j7k", "already terminating"),
        ("hastack/hastack-app-7c9f8d6b5d-zz9k1", "finished"),
    ]


def test_zone_kill_plan_of_every_namespace_leaves_daemonset_and_mirror_pods_alone() -> None:
    cluster = zone_cluster()
    plan = zone_kill_plan(cluster["nodes"], cluster["pods"], "eu-west-1a")
    assert [p["metadata"]["name"] for p in plan.kill] == [
        "hastack-0",
        "hastack-redis-0",
        "hastack-sentinel-0",
        "hastack-app-7c9f8d6b5d-4xk2p",
        "coredns-5b9dd8f4c7-7wq2n",
    ]
    daemons = [
        f"{ns}/{daemon_pod(ns, name, {}, node)['metadata']['name']}" for node in plan.nodes for ns, name in DAEMONS
    ]
    assert sorted(plan.skipped) == sorted(
        [(name, "DaemonSet pod") for name in daemons]
        + [
            (f"kube-system/node-probe-{ZONE_A[0]}", "mirror (static) pod"),
            ("hastack/hastack-app-5b8d7c6f4e-h2j7k", "already terminating"),
            ("hastack/hastack-app-7c9f8d6b5d-zz9k1", "finished"),
        ]
    )


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

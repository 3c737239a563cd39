# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""Kubernetes disruptions for the drills: what to break, and the API requests.

Pure functions over API objects (as kubernetes.core.k8s_info or the API
returns them) that build the request bodies the drill engine sends:

- ``kill``: delete a pod with grace period 0 (the pod's processes get SIGKILL;
  the API object goes at once, the StatefulSet recreates the pod);
- ``drain``: cordon the node, then evict its pods one by one through the
  Eviction API, which honours PodDisruptionBudgets (a 429 means "not now");
- ``zone``: the nodes, or the pods, of one zone.

No cluster exists on this project's machines: these functions are unit-tested
on k8s_info-shaped objects; the requests have never been sent to a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ZONE_KEY = "topology.kubernetes.io/zone"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


class DrillTargetError(ValueError):
    """The requested target does not exist or is ambiguous."""


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _resources(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict) and isinstance(value.get("resources"), list):
        return value["resources"]
    if isinstance(value, list):
        return value
    raise DrillTargetError(f"expected a list of API objects or a k8s_info result, got {type(value).__name__}")


def node_zone(node: dict[str, Any]) -> str:
    return (_meta(node).get("labels") or {}).get(ZONE_KEY, "")


def nodes_in_zone(nodes: Any, zone: str) -> list[dict[str, Any]]:
    """The nodes of ``zone`` (label topology.kubernetes.io/zone), by name."""
    found = sorted((n for n in _resources(nodes) if node_zone(n) == zone), key=lambda n: _meta(n).get("name", ""))
    if not found:
        zones = sorted({node_zone(n) for n in _resources(nodes)} - {""})
        raise DrillTargetError(f"no node in zone {zone!r}; zones with nodes: {', '.join(zones) or 'none'}")
    return found


def pods_in_zone(pods: Any, nodes: Any, zone: str) -> list[dict[str, Any]]:
    """The scheduled, not terminating pods that run on a node of ``zone``."""
    names = {_meta(n).get("name") for n in nodes_in_zone(nodes, zone)}
    return [
        p
        for p in _resources(pods)
        if (p.get("spec") or {}).get("nodeName") in names and not _meta(p).get("deletionTimestamp")
    ]


def pod_with_label(pods: Any, key: str, value: str) -> dict[str, Any]:
    """The one live pod labelled key=value (Patroni's role=primary, for instance)."""
    found = [
        p
        for p in _resources(pods)
        if (_meta(p).get("labels") or {}).get(key) == value and not _meta(p).get("deletionTimestamp")
    ]
    if len(found) != 1:
        names = ", ".join(_meta(p).get("name", "?") for p in found) or "none"
        raise DrillTargetError(f"expected exactly one pod labelled {key}={value}, found {len(found)}: {names}")
    return found[0]


def kill_request(pod: dict[str, Any]) -> dict[str, Any]:
    """DELETE of the pod with grace period 0 (the drill's ``kill``)."""
    meta = _meta(pod)
    return {
        "method": "DELETE",
        "path": f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
        "body": {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            # only this pod, as it was when chosen (not a successor with the same name)
            "preconditions": {"uid": meta["uid"]},
        },
    }


def cordon_request(node: dict[str, Any]) -> dict[str, Any]:
    """PATCH that marks the node unschedulable (first step of a drain)."""
    return {
        "method": "PATCH",
        "path": f"/api/v1/nodes/{_meta(node)['name']}",
        "content_type": "application/strategic-merge-patch+json",
        "body": {"spec": {"unschedulable": True}},
    }


def eviction_request(pod: dict[str, Any]) -> dict[str, Any]:
    """POST of an Eviction (policy/v1) for the pod: the API server honours its PDB."""
    meta = _meta(pod)
    return {
        "method": "POST",
        "path": f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/eviction",
        "body": {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        },
    }


@dataclass(frozen=True)
class DrainPlan:
    node: str
    evict: list[dict[str, Any]]
    skipped: list[tuple[str, str]]


def drain_plan(node: dict[str, Any], pods: Any) -> DrainPlan:
    """What `kubectl drain` would evict from the node, and what it leaves, and why.

    Left alone: DaemonSet pods (their controller would put them back at once),
    mirror (static) pods (the API cannot remove them), finished and already
    terminating pods.
    """
    name = _meta(node).get("name", "")
    evict, skipped = [], []
    for pod in _resources(pods):
        meta, spec = _meta(pod), pod.get("spec") or {}
        if spec.get("nodeName") != name:
            continue
        owners = meta.get("ownerReferences") or []
        pod_name = f"{meta.get('namespace', '')}/{meta.get('name', '?')}"
        if any(o.get("kind") == "DaemonSet" and o.get("controller") for o in owners):
            skipped.append((pod_name, "DaemonSet pod"))
        elif MIRROR_ANNOTATION in (meta.get("annotations") or {}):
            skipped.append((pod_name, "mirror (static) pod"))
        elif (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            skipped.append((pod_name, "finished"))
        elif meta.get("deletionTimestamp"):
            skipped.append((pod_name, "already terminating"))
        else:
            evict.append(eviction_request(pod))
    return DrainPlan(node=name, evict=evict, skipped=skipped)


def eviction_outcome(status: int, body: dict[str, Any] | None = None) -> str:
    """What an Eviction response means for the drill: evicted, retry, gone or error."""
    if status in (200, 201):
        return "evicted"
    if status == 429:
        # the PDB allows no disruption now; the drain waits and retries
        return "retry"
    if status == 404:
        return "gone"
    message = (body or {}).get("message", "")
    return f"error: HTTP {status} {message}".rstrip()

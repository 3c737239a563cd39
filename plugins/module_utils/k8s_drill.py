# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""Kubernetes disruptions for the drills: what to break, and the API requests.

Pure functions over API objects (as kubernetes.core.k8s_info or the API
returns them) that build the request bodies the drill engine sends:

- ``kill``: delete a pod with grace period 0 (the pod's processes get SIGKILL;
  the API object goes at once, the StatefulSet recreates the pod);
- ``drain``: cordon the node, then evict its pods one by one through the
  Eviction API, which honours PodDisruptionBudgets (a 429 means "not now");
- ``zone``: the nodes, or the pods, of one zone; ``kill_zone`` deletes every
  pod of a namespace on a zone's nodes (grace period 0), back to back.

No cluster exists on this project's machines: these functions are unit-tested
on k8s_info-shaped objects; the requests have never been sent to a cluster.
"""

from __future__ import annotations

import time
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
        raise DrillTargetError(
            f"no node in zone {zone!r} (label {ZONE_KEY}); zones with nodes: {', '.join(zones) or 'none'}"
        )
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


def pod_name(pod: dict[str, Any]) -> str:
    meta = _meta(pod)
    return f"{meta.get('namespace', '')}/{meta.get('name', '?')}"


def left_alone(pod: dict[str, Any]) -> str:
    """Why a drain or a zone kill leaves the pod alone ("" if it does not).

    DaemonSet pods (their controller would put them back at once), mirror
    (static) pods (the API cannot remove them), finished and already
    terminating pods, as `kubectl drain` does.
    """
    meta = _meta(pod)
    owners = meta.get("ownerReferences") or []
    if any(o.get("kind") == "DaemonSet" and o.get("controller") for o in owners):
        return "DaemonSet pod"
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return "mirror (static) pod"
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return "finished"
    if meta.get("deletionTimestamp"):
        return "already terminating"
    return ""


@dataclass(frozen=True)
class DrainPlan:
    node: str
    evict: list[dict[str, Any]]
    skipped: list[tuple[str, str]]


def _disruptable(pods: Any, node_names: set[str]) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The pods on the named nodes a drain or zone kill disrupts, and those it leaves alone (name, why)."""
    targets, skipped = [], []
    for pod in _resources(pods):
        if (pod.get("spec") or {}).get("nodeName") not in node_names:
            continue
        reason = left_alone(pod)
        if reason:
            skipped.append((pod_name(pod), reason))
        else:
            targets.append(pod)
    return targets, skipped


def drain_plan(node: dict[str, Any], pods: Any) -> DrainPlan:
    """What `kubectl drain` would evict from the node, and what it leaves (left_alone), and why."""
    name = _meta(node).get("name", "")
    evict, skipped = _disruptable(pods, {name})
    return DrainPlan(node=name, evict=[eviction_request(p) for p in evict], skipped=skipped)


@dataclass(frozen=True)
class ZoneKillPlan:
    zone: str
    nodes: list[str]
    kill: list[dict[str, Any]]
    skipped: list[tuple[str, str]]


def zone_kill_plan(nodes: Any, pods: Any, zone: str) -> ZoneKillPlan:
    """The pods a zone kill deletes: those on a node of ``zone``, but what a drain leaves alone too."""
    names = [_meta(n).get("name", "") for n in nodes_in_zone(nodes, zone)]
    kill, skipped = _disruptable(pods, set(names))
    return ZoneKillPlan(zone=zone, nodes=names, kill=kill, skipped=skipped)


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


# --- the disruptions, run against an API client -------------------------------
#
# ``api`` is anything with ``request(method, path, body=None, content_type=None,
# query=None) -> (status, body)``: the module's client over the Python package
# ``kubernetes``, or a fake in the unit tests. Errors are returned, not raised,
# by the client; these functions turn them into DrillTargetError / results.


class RealClock:
    """Wall time for the drill's events, monotonic time for durations."""

    @staticmethod
    def wall() -> float:
        return time.time()

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)


class K8sRequestError(RuntimeError):
    """The API server refused a request the drill needs; ``cordoned``: the nodes a drain left cordoned."""

    def __init__(self, message: str, cordoned: list[str] | None = None) -> None:
        super().__init__(message)
        self.cordoned = list(cordoned or [])


def _call(api: Any, request: dict[str, Any], ok: tuple[int, ...] = (200, 201)) -> dict[str, Any]:
    status, body = api.request(
        request["method"], request["path"], body=request.get("body"), content_type=request.get("content_type")
    )
    if status not in ok:
        message = (body or {}).get("message", "")
        raise K8sRequestError(f"{request['method']} {request['path']}: HTTP {status} {message}".rstrip())
    return body or {}


def list_pods(api: Any, namespace: str | None = None, **query: str) -> list[dict[str, Any]]:
    """Pods of a namespace (or all), filtered by labelSelector / fieldSelector."""
    path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
    status, body = api.request("GET", path, query={k: v for k, v in query.items() if v})
    if status != 200:
        raise K8sRequestError(f"GET {path} {query}: HTTP {status} {(body or {}).get('message', '')}".rstrip())
    return list((body or {}).get("items") or [])


def list_nodes(api: Any) -> list[dict[str, Any]]:
    status, body = api.request("GET", "/api/v1/nodes")
    if status != 200:
        raise K8sRequestError(f"GET /api/v1/nodes: HTTP {status} {(body or {}).get('message', '')}".rstrip())
    return list((body or {}).get("items") or [])


def choose_pod(pods: list[dict[str, Any]], name: str = "", label: dict[str, str] | None = None) -> dict[str, Any]:
    """The target pod: by name, or the one live pod with the label (Patroni's role=primary)."""
    if name:
        found = [p for p in pods if _meta(p).get("name") == name and not _meta(p).get("deletionTimestamp")]
        if not found:
            names = ", ".join(sorted(_meta(p).get("name", "?") for p in pods)) or "none"
            raise DrillTargetError(f"no live pod named {name!r}; pods: {names}")
        return found[0]
    if not label or len(label) != 1:
        raise DrillTargetError("name a pod, or give exactly one label key=value that marks the target")
    ((key, value),) = label.items()
    return pod_with_label(pods, key, value)


def kill(api: Any, pod: dict[str, Any], clock: Any) -> dict[str, Any]:
    """Delete the pod with grace period 0 (its uid as precondition); when it was sent."""
    meta = _meta(pod)
    t_wall = clock.wall()
    _call(api, kill_request(pod), ok=(200, 202))
    return {
        "pod": meta.get("name"),
        "uid": meta.get("uid"),
        "node": (pod.get("spec") or {}).get("nodeName"),
        "t_wall": t_wall,
    }


@dataclass
class ZoneKillResult:
    zone: str
    nodes: list[str]
    pods: list[str]
    gone: list[str]
    errors: list[str]
    skipped: list[tuple[str, str]]
    t_wall: float
    duration_s: float


def kill_zone(api: Any, plan: ZoneKillPlan, clock: Any) -> ZoneKillResult:
    """Delete every pod of the plan with grace period 0 and its uid as precondition, back to back.

    A pod already deleted (404) or replaced by a successor with the same name
    (409, the uid precondition) is reported gone; any other refusal is
    collected in ``errors`` and the remaining deletes are still sent, so the
    zone's outage is as complete as the API server allows.
    """
    start, t_wall = clock.monotonic(), clock.wall()
    killed, gone, errors = [], [], []
    for pod in plan.kill:
        request = kill_request(pod)
        status, body = api.request(request["method"], request["path"], body=request["body"])
        if status in (200, 202):
            killed.append(pod_name(pod))
        elif status in (404, 409):
            gone.append(pod_name(pod))
        else:
            errors.append(f"{pod_name(pod)}: HTTP {status} {(body or {}).get('message', '')}".rstrip())
    return ZoneKillResult(
        zone=plan.zone,
        nodes=plan.nodes,
        pods=killed,
        gone=gone,
        errors=errors,
        skipped=plan.skipped,
        t_wall=t_wall,
        duration_s=round(clock.monotonic() - start, 3),
    )


@dataclass
class DrainResult:
    nodes: list[str]
    cordoned: list[str]
    evicted: list[str]
    gone: list[str]
    blocked: list[str]
    skipped: list[tuple[str, str]]
    retries: int
    t_wall: float
    duration_s: float

    @property
    def complete(self) -> bool:
        return not self.blocked


def drain(
    api: Any,
    nodes: list[dict[str, Any]],
    clock: Any,
    timeout_s: float = 120.0,
    retry_interval_s: float = 5.0,
) -> DrainResult:
    """Drain ``nodes`` as kubectl drain does: cordon them all, then evict their pods.

    Every pod of the drain plan is evicted through the Eviction API; a 429
    (its PodDisruptionBudget allows no disruption now) is retried every
    ``retry_interval_s`` until ``timeout_s`` after the start, then the pod is
    reported blocked. Any other refusal raises K8sRequestError, whose
    ``cordoned`` names the nodes cordoned so far (they stay cordoned: the heal
    uncordons them).
    """
    cordoned: list[str] = []
    try:
        return _cordon_and_evict(api, nodes, clock, timeout_s, retry_interval_s, cordoned)
    except K8sRequestError as error:
        if not cordoned:
            raise
        raise K8sRequestError(
            f"{error}; {', '.join(cordoned)} stay cordoned (the drill's heal uncordons them)", cordoned
        ) from error


def _cordon_and_evict(
    api: Any, nodes: list[dict[str, Any]], clock: Any, timeout_s: float, retry_interval_s: float, cordoned: list[str]
) -> DrainResult:
    start, t_wall = clock.monotonic(), clock.wall()
    names = [_meta(n).get("name", "") for n in nodes]
    for node in nodes:
        _call(api, cordon_request(node))
        cordoned.append(_meta(node).get("name", ""))
    plans = [drain_plan(n, list_pods(api, fieldSelector=f"spec.nodeName={_meta(n).get('name', '')}")) for n in nodes]
    pending = [e for p in plans for e in p.evict]
    evicted, gone, retries = [], [], 0
    while pending:
        waiting = []
        for request in pending:
            status, body = api.request(request["method"], request["path"], body=request["body"])
            outcome = eviction_outcome(status, body)
            name = f"{request['body']['metadata']['namespace']}/{request['body']['metadata']['name']}"
            if outcome == "evicted":
                evicted.append(name)
            elif outcome == "gone":
                gone.append(name)
            elif outcome == "retry":
                waiting.append(request)
            else:
                raise K8sRequestError(f"evicting {name}: {outcome}")
        pending = waiting
        if pending:
            if clock.monotonic() - start + retry_interval_s > timeout_s:
                break
            retries += 1
            clock.sleep(retry_interval_s)
    blocked = [f"{r['body']['metadata']['namespace']}/{r['body']['metadata']['name']}" for r in pending]
    return DrainResult(
        nodes=names,
        cordoned=cordoned,
        evicted=evicted,
        gone=gone,
        blocked=blocked,
        skipped=[s for p in plans for s in p.skipped],
        retries=retries,
        t_wall=t_wall,
        duration_s=round(clock.monotonic() - start, 3),
    )


def uncordon_request(node_name: str) -> dict[str, Any]:
    """PATCH that makes the node schedulable again (the heal of a drain)."""
    return {
        "method": "PATCH",
        "path": f"/api/v1/nodes/{node_name}",
        "content_type": "application/strategic-merge-patch+json",
        "body": {"spec": {"unschedulable": False}},
    }


def uncordon(api: Any, node_names: list[str]) -> list[str]:
    for name in node_names:
        _call(api, uncordon_request(name))
    return list(node_names)


def drain_targets(nodes: list[dict[str, Any]], pods: list[dict[str, Any]], node: str = "", zone: str = "",
                  pod: dict[str, Any] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The nodes to drain: one by name, every node of a zone, or the target pod's node."""
    if sum(bool(x) for x in (node, zone, pod)) != 1:
        raise DrillTargetError("drain needs exactly one of node, zone or a target pod")
    if zone:
        return nodes_in_zone(nodes, zone)
    name = node or ((pod or {}).get("spec") or {}).get("nodeName", "")
    if pod is not None and not name:
        raise DrillTargetError(f"pod {_meta(pod).get('name')} is not scheduled on a node")
    found = [n for n in nodes if _meta(n).get("name") == name]
    if not found:
        raise DrillTargetError(f"no node named {name!r}")
    return found

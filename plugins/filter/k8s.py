# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""Semantic checks of Kubernetes manifests, and verdicts over live objects.

Pure functions: no I/O. Two kinds:

- manifest checks (``k8s_selector_problems``, ``k8s_pdb_problems``,
  ``k8s_spread_problems``, ``k8s_container_problems``, ``k8s_job_problems``,
  and ``k8s_manifest_problems`` for all of them) take the list of objects a role
  rendered and return one line per problem; an empty list means none. They
  check what a schema cannot: that the objects fit together.
- live verdicts (``zone_skew``, ``pdb_headroom``, ``k8s_rollout_problems``)
  take what ``kubernetes.core.k8s_info`` returns (the registered result or its
  ``resources`` list).

Each is documented in a sidecar YAML file of the same name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from ansible.errors import AnsibleFilterError

WORKLOAD_KINDS = ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet")
# Run to completion: no replicas, PDB, spread or probes, but sized and pinned containers.
JOB_KINDS = ("Job",)
ZONE_KEY = "topology.kubernetes.io/zone"
HOSTNAME_KEY = "kubernetes.io/hostname"
# name[:tag] or name@sha256:...; the tag is what follows the last ':' after the last '/'.
IMAGE_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


# --- input --------------------------------------------------------------------


def _resources(value: Any, filter_name: str) -> list[dict[str, Any]]:
    """A list of API objects, from a list or from a k8s_info result."""
    if isinstance(value, dict) and isinstance(value.get("resources"), list):
        value = value["resources"]
    if not isinstance(value, list) or not all(isinstance(o, dict) for o in value):
        raise AnsibleFilterError(
            f"{filter_name}: expected a list of Kubernetes objects (dicts) or a "
            f"kubernetes.core.k8s_info result, got {type(value).__name__}"
        )
    return value


def _ref(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')}/{meta.get('name', '?')}"


def _labels(selector: dict[str, Any] | None) -> dict[str, str]:
    """matchLabels of a LabelSelector (matchExpressions are reported, not evaluated)."""
    return dict((selector or {}).get("matchLabels") or {})


def _matches(selector: dict[str, str], labels: dict[str, str], ignore: Iterable[str] = ()) -> bool:
    skip = set(ignore)
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items() if k not in skip)


def _workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") in WORKLOAD_KINDS]


def _pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    return ((workload.get("spec") or {}).get("template")) or {}


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return dict((_pod_template(workload).get("metadata") or {}).get("labels") or {})


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return _pod_template(workload).get("spec") or {}


def _replicas(workload: dict[str, Any]) -> int | None:
    if workload.get("kind") == "DaemonSet":
        return None
    return int((workload.get("spec") or {}).get("replicas", 1))


def _selected(
    selector: dict[str, str], objects: list[dict[str, Any]], ignore: Iterable[str] = (), kinds: tuple = WORKLOAD_KINDS
) -> list[dict]:
    return [w for w in objects if w.get("kind") in kinds and _matches(selector, _pod_labels(w), ignore)]


# --- manifest checks ------------------------------------------------------------


def k8s_selector_problems(objects: Any, runtime_labels: list[str] | None = None) -> list[str]:
    """Every selector selects the pods it is meant for.

    A workload's selector must match its own pod template; each Service,
    PodDisruptionBudget and NetworkPolicy must select the pods of at least one
    rendered workload (a NetworkPolicy: or Job). ``runtime_labels`` are label
    keys set on pods at run time (Patroni's ``role``), ignored in Service
    selectors.
    """
    objects = _resources(objects, "k8s_selector_problems")
    ignore = list(runtime_labels or [])
    problems = []
    for w in _workloads(objects):
        selector = (w.get("spec") or {}).get("selector") or {}
        if selector.get("matchExpressions"):
            problems.append(f"{_ref(w)}: selector uses matchExpressions, which these checks do not evaluate")
        if not _matches(_labels(selector), _pod_labels(w)):
            problems.append(
                f"{_ref(w)}: spec.selector {_labels(selector)} does not match its pod template labels {_pod_labels(w)}"
            )
    for o in objects:
        kind, spec = o.get("kind"), o.get("spec") or {}
        if kind == "Service":
            selector, where, skip = dict(spec.get("selector") or {}), "spec.selector", ignore
        elif kind == "PodDisruptionBudget":
            selector, where, skip = _labels(spec.get("selector")), "spec.selector.matchLabels", []
        elif kind == "NetworkPolicy":
            selector, where, skip = _labels(spec.get("podSelector")), "spec.podSelector.matchLabels", []
        else:
            continue
        kinds = WORKLOAD_KINDS + JOB_KINDS if kind == "NetworkPolicy" else WORKLOAD_KINDS
        if not selector:
            problems.append(f"{_ref(o)}: {where} is empty (it would select every pod or none)")
        elif not _selected(selector, objects, skip, kinds):
            problems.append(f"{_ref(o)}: {where} {selector} matches the pods of no rendered workload")
    return problems


def _min_available(value: Any, replicas: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(replicas * int(value[:-1]) / 100)
    return int(value)


def _max_unavailable(value: Any, replicas: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.floor(replicas * int(value[:-1]) / 100)
    return int(value)


def k8s_pdb_problems(objects: Any) -> list[str]:
    """Every PodDisruptionBudget allows a disruption, but not all of them.

    It sets exactly one of minAvailable / maxUnavailable, selects the pods of
    exactly one workload, and with that workload's replicas
    1 <= minAvailable < replicas (or 1 <= maxUnavailable < replicas).
    Every workload with more than one replica has a PDB.
    """
    objects = _resources(objects, "k8s_pdb_problems")
    problems = []
    covered: set[str] = set()
    for pdb in (o for o in objects if o.get("kind") == "PodDisruptionBudget"):
        spec = pdb.get("spec") or {}
        workloads = _selected(_labels(spec.get("selector")), objects)
        covered.update(_ref(w) for w in workloads)
        has_min, has_max = "minAvailable" in spec, "maxUnavailable" in spec
        if has_min == has_max:
            problems.append(
                f"{_ref(pdb)}: sets {'both' if has_min else 'neither of'} minAvailable and maxUnavailable; "
                "set exactly one"
            )
            continue
        if len(workloads) != 1:
            problems.append(
                f"{_ref(pdb)}: selects the pods of {len(workloads)} workloads "
                f"({', '.join(_ref(w) for w in workloads) or 'none'}); it must select exactly one"
            )
            continue
        workload = workloads[0]
        replicas = _replicas(workload)
        if replicas is None:
            continue
        if has_min:
            value = _min_available(spec["minAvailable"], replicas)
            if not 1 <= value < replicas:
                problems.append(
                    f"{_ref(pdb)}: minAvailable {spec['minAvailable']} with {replicas} replicas of "
                    f"{_ref(workload)}; rule: 1 <= minAvailable < replicas "
                    f"({'no disruption is ever allowed: drains block' if value >= replicas else 'no pod protected'})"
                )
        else:
            value = _max_unavailable(spec["maxUnavailable"], replicas)
            if not 1 <= value < replicas:
                problems.append(
                    f"{_ref(pdb)}: maxUnavailable {spec['maxUnavailable']} with {replicas} replicas of "
                    f"{_ref(workload)}; rule: 1 <= maxUnavailable < replicas"
                )
    for w in _workloads(objects):
        if (_replicas(w) or 0) > 1 and _ref(w) not in covered:
            problems.append(f"{_ref(w)}: {_replicas(w)} replicas and no PodDisruptionBudget selects them")
    return problems


def k8s_spread_problems(objects: Any) -> list[str]:
    """Workloads with more than one replica spread over zones and hosts.

    Each needs a zone constraint with maxSkew 1 and whenUnsatisfiable
    DoNotSchedule, and a hostname constraint; every constraint's labelSelector
    must match the workload's own pod labels (else it counts other pods, or
    none); minDomains needs DoNotSchedule.
    """
    objects = _resources(objects, "k8s_spread_problems")
    problems = []
    for w in _workloads(objects):
        if w.get("kind") == "DaemonSet" or (_replicas(w) or 0) < 2:
            continue
        constraints = _pod_spec(w).get("topologySpreadConstraints") or []
        keys = {}
        for c in constraints:
            key = c.get("topologyKey")
            keys[key] = c
            selector = _labels(c.get("labelSelector"))
            if not _matches(selector, _pod_labels(w)):
                problems.append(
                    f"{_ref(w)}: topology spread on {key}: labelSelector {selector} does not match the "
                    f"pod labels {_pod_labels(w)}"
                )
            if "minDomains" in c and c.get("whenUnsatisfiable") != "DoNotSchedule":
                problems.append(
                    f"{_ref(w)}: topology spread on {key}: minDomains needs whenUnsatisfiable DoNotSchedule"
                )
        zone = keys.get(ZONE_KEY)
        if zone is None:
            problems.append(f"{_ref(w)}: {_replicas(w)} replicas and no topology spread on {ZONE_KEY}")
        elif zone.get("maxSkew") != 1 or zone.get("whenUnsatisfiable") != "DoNotSchedule":
            problems.append(
                f"{_ref(w)}: topology spread on {ZONE_KEY} is maxSkew {zone.get('maxSkew')}, "
                f"{zone.get('whenUnsatisfiable')}; rule: maxSkew 1, DoNotSchedule"
            )
        if HOSTNAME_KEY not in keys:
            problems.append(f"{_ref(w)}: {_replicas(w)} replicas and no topology spread on {HOSTNAME_KEY}")
    return problems


def image_problem(image: Any) -> str | None:
    """Why an image reference is not pinned, or None."""
    if not isinstance(image, str) or not image:
        return "no image"
    if IMAGE_DIGEST.search(image):
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image} has no tag (means latest)"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {image} is tagged latest"
    return None


def k8s_container_problems(objects: Any) -> list[str]:
    """Every container is probed, sized and pinned.

    Containers of workloads: a readinessProbe and a livenessProbe; every
    container and init container, of Jobs too: requests of cpu and memory, a
    memory limit equal to the memory request (no overcommit of memory), an
    image pinned by a tag other than latest or by a digest.
    """
    objects = _resources(objects, "k8s_container_problems")
    problems = []
    for w in [o for o in objects if o.get("kind") in WORKLOAD_KINDS + JOB_KINDS]:
        spec = _pod_spec(w)
        pairs = [("container", c) for c in spec.get("containers") or []]
        pairs += [("init container", c) for c in spec.get("initContainers") or []]
        if not pairs:
            problems.append(f"{_ref(w)}: no containers")
        for what, c in pairs:
            where = f"{_ref(w)} {what} {c.get('name', '?')}"
            if what == "container" and w.get("kind") not in JOB_KINDS:
                missing = [p for p in ("readinessProbe", "livenessProbe") if not c.get(p)]
                if missing:
                    problems.append(f"{where}: no {' and no '.join(missing)}")
            resources = c.get("resources") or {}
            requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
            missing = [f"requests.{r}" for r in ("cpu", "memory") if r not in requests]
            missing += ["limits.memory"] if "memory" not in limits else []
            if missing:
                problems.append(f"{where}: resources without {', '.join(missing)}")
            elif str(requests["memory"]) != str(limits["memory"]):
                problems.append(
                    f"{where}: memory request {requests['memory']} != limit {limits['memory']} "
                    "(the pod can be killed under node memory pressure)"
                )
            problem = image_problem(c.get("image"))
            if problem:
                problems.append(f"{where}: {problem}")
    return problems


def k8s_job_problems(objects: Any) -> list[str]:
    """Every Job retries a bounded number of times, ends, and is cleaned up.

    Its pods restart OnFailure or Never (Always is invalid for a Job), and it
    sets backoffLimit, activeDeadlineSeconds (a run that hangs ends) and
    ttlSecondsAfterFinished (a finished Job does not stay forever and, where
    the Job is re-applied, runs again), each explicitly.
    """
    objects = _resources(objects, "k8s_job_problems")
    problems = []
    for job in (o for o in objects if o.get("kind") in JOB_KINDS):
        spec = job.get("spec") or {}
        policy = _pod_spec(job).get("restartPolicy")
        if policy not in ("OnFailure", "Never"):
            problems.append(f"{_ref(job)}: restartPolicy {policy}; rule: OnFailure or Never")
        for field in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
            if not isinstance(spec.get(field), int) or spec[field] < 0:
                problems.append(f"{_ref(job)}: spec.{field} not set (a whole number >= 0)")
    return problems


MANIFEST_CHECKS: dict[str, Callable[..., list[str]]] = {
    "selectors": k8s_selector_problems,
    "pdb": k8s_pdb_problems,
    "spread": k8s_spread_problems,
    "containers": k8s_container_problems,
    "jobs": k8s_job_problems,
}


def k8s_manifest_problems(objects: Any, runtime_labels: list[str] | None = None) -> list[str]:
    """All manifest checks; one line per problem."""
    objects = _resources(objects, "k8s_manifest_problems")
    problems = k8s_selector_problems(objects, runtime_labels)
    for name, check in MANIFEST_CHECKS.items():
        if name != "selectors":
            problems += check(objects)
    return problems


def k8s_schema_problems(objects: Any, version: str, strict: bool = True) -> list[str]:
    """Objects that do not validate against the Kubernetes schemas of ``version``.

    Uses the schemas kubernetes-validate ships (offline). Strict: a field the
    schema does not know is a problem. ``objects`` may also be a dict of
    name -> object (the name is then used in the lines).
    """
    try:
        import kubernetes_validate  # only this filter needs it
    except ImportError as error:
        raise AnsibleFilterError(
            "k8s_schema_problems needs the Python package kubernetes-validate on the controller (requirements.txt)"
        ) from error
    named = objects.items() if isinstance(objects, dict) else ((_ref(o), o) for o in _resources(objects, "x"))
    problems = []
    for name, obj in named:
        try:
            kubernetes_validate.validate(obj, str(version), strict=strict)
        except kubernetes_validate.ValidationError as error:
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            problems.append(f"{name}: {where}: {error.message} (Kubernetes {version}, strict={strict})")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name}: no schema for {obj.get('kind')} {obj.get('apiVersion')} in Kubernetes {version}")
        except kubernetes_validate.utils.VersionNotSupportedError:
            problems.append(f"{name}: kubernetes-validate has no schemas for Kubernetes {version}")
        except (KeyError, TypeError) as error:
            problems.append(f"{name}: not a Kubernetes object ({error})")
    return problems


# --- live verdicts ------------------------------------------------------------


def _node_zones(nodes: list[dict[str, Any]]) -> dict[str, str]:
    return {
        (n.get("metadata") or {}).get("name", "?"): ((n.get("metadata") or {}).get("labels") or {}).get(ZONE_KEY, "")
        for n in nodes
    }


def _schedulable(node: dict[str, Any]) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def zone_skew(pods: Any, nodes: Any) -> dict[str, Any]:
    """Pods per zone and the skew between the zones with schedulable nodes.

    Counts pods that are scheduled and not terminating; a zone of the nodes
    with no pod counts 0. ``skew`` is max - min over the zones that have a
    schedulable (Ready, not cordoned) node, as the scheduler computes it for
    topology spread.
    """
    pods = _resources(pods, "zone_skew")
    nodes = _resources(nodes, "zone_skew")
    zones = _node_zones(nodes)
    eligible = sorted({zones[(n.get("metadata") or {}).get("name", "?")] for n in nodes if _schedulable(n)} - {""})
    counts = {z: 0 for z in sorted(set(zones.values()) - {""})}
    unscheduled, unknown = [], []
    for pod in pods:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        node = spec.get("nodeName")
        if not node:
            unscheduled.append(meta.get("name", "?"))
        elif not zones.get(node):
            unknown.append(meta.get("name", "?"))
        else:
            counts[zones[node]] += 1
    values = [counts[z] for z in eligible] or [0]
    return {
        "counts": counts,
        "eligible_zones": eligible,
        "skew": max(values) - min(values),
        "unscheduled": unscheduled,
        "unknown_zone": unknown,
    }


def pdb_headroom(pdbs: Any) -> list[dict[str, Any]]:
    """What each PodDisruptionBudget allows now (from its status)."""
    result = []
    for pdb in _resources(pdbs, "pdb_headroom"):
        status = pdb.get("status") or {}
        meta = pdb.get("metadata") or {}
        observed = status.get("observedGeneration")
        current = observed is not None and observed >= meta.get("generation", 0)
        allowed = int(status.get("disruptionsAllowed", 0))
        result.append(
            {
                "name": meta.get("name", "?"),
                "namespace": meta.get("namespace", ""),
                "disruptions_allowed": allowed,
                "current_healthy": int(status.get("currentHealthy", 0)),
                "desired_healthy": int(status.get("desiredHealthy", 0)),
                "expected_pods": int(status.get("expectedPods", 0)),
                "observed": current,
                "ok": current and allowed >= 1,
            }
        )
    return result


def k8s_rollout_problems(workloads: Any) -> list[str]:
    """StatefulSets / Deployments whose rollout is not complete."""
    problems = []
    for w in _resources(workloads, "k8s_rollout_problems"):
        meta, spec, status = w.get("metadata") or {}, w.get("spec") or {}, w.get("status") or {}
        replicas = int(spec.get("replicas", 1))
        if status.get("observedGeneration", 0) < meta.get("generation", 0):
            problems.append(f"{_ref(w)}: the controller has not seen generation {meta.get('generation')} yet")
            continue
        for field in ("readyReplicas", "updatedReplicas") + (
            ("availableReplicas",) if w.get("kind") == "Deployment" else ("currentReplicas",)
        ):
            if int(status.get(field, 0)) != replicas:
                problems.append(f"{_ref(w)}: {field} {status.get(field, 0)} of {replicas}")
        if w.get("kind") == "StatefulSet" and status.get("currentRevision") != status.get("updateRevision"):
            problems.append(
                f"{_ref(w)}: update to revision {status.get('updateRevision')} not complete "
                f"(current {status.get('currentRevision')})"
            )
    return problems


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "k8s_selector_problems": k8s_selector_problems,
            "k8s_pdb_problems": k8s_pdb_problems,
            "k8s_spread_problems": k8s_spread_problems,
            "k8s_container_problems": k8s_container_problems,
            "k8s_job_problems": k8s_job_problems,
            "k8s_manifest_problems": k8s_manifest_problems,
            "k8s_schema_problems": k8s_schema_problems,
            "zone_skew": zone_skew,
            "pdb_headroom": pdb_headroom,
            "k8s_rollout_problems": k8s_rollout_problems,
        }

#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: k8s_disrupt
short_description: Disrupt Kubernetes workloads for a drill (pod or zone kill with grace 0, drain, uncordon)
version_added: 0.1.0
description:
  - The Kubernetes disruptions of the drill engine (the hosts platform kills, stops, freezes
    and partitions processes instead).
  - O(action=kill) deletes one pod with grace period 0 and its uid as precondition (its
    processes get SIGKILL; the StatefulSet or Deployment recreates it). The pod is named
    (O(pod)) or found by one label (O(target_label), for example Patroni's C(role=primary)).
  - O(action=kill) with O(zone) deletes every pod of O(namespace) (those of O(label_selector)
    if given) that runs on a node of the zone, each with grace period 0 and its uid as
    precondition, the requests sent back to back. DaemonSet, mirror, finished and already
    terminating pods are left alone, as a drain leaves them, and reported in RV(skipped). A pod
    deleted or replaced meanwhile (HTTP 404, or 409 from the uid precondition) is reported in
    RV(gone); any other refusal in RV(errors), after the other deletes were sent, and the task
    fails. A zone with no pod to kill fails too (the drill would disrupt nothing).
  - O(action=kill) takes exactly one of O(pod), O(target_label) and O(zone).
  - O(action=drain) cordons the node(s), then evicts their pods through the Eviction API, as
    C(kubectl drain) does (DaemonSet, mirror, finished and terminating pods are left alone). A
    PodDisruptionBudget that allows no disruption answers HTTP 429; such a pod is retried every
    O(retry_interval_s) until O(eviction_timeout_s), then reported in RV(blocked) and the task
    fails. The nodes are one by name (O(node)), all of a zone (O(zone)), or the node of the
    target pod (O(pod) or O(target_label)); exactly one of the four.
  - A zone no node is labelled with (C(topology.kubernetes.io/zone)) is an error that names the
    zones the nodes have.
  - O(action=uncordon) makes the named nodes schedulable again (the drill's heal).
  - Needs the Python package C(kubernetes) on the controller (requirements.txt pins it).
    B(Never run against a cluster by this project); its logic is unit-tested against a
    fake API client, and its client over C(kubernetes) against the same fake served over HTTP
    on 127.0.0.1 (tests/unit/test_k8s_disrupt.py).
  - Check mode reports what would be deleted, evicted or cordoned and sends nothing.
author:
  - hastack developers
options:
  action:
    description: What to do.
    type: str
    required: true
    choices: [kill, drain, uncordon]
  kubeconfig:
    description: Kubeconfig of the cluster.
    type: path
    required: true
  context:
    description: Context in the kubeconfig; empty uses its current context.
    type: str
    default: ""
  namespace:
    description: Namespace of the target pod, or of the pods a zone kill deletes.
    type: str
    default: hastack
  pod:
    description: Name of the target pod (kill; drain of its node).
    type: str
    default: ""
  label_selector:
    description: Label selector of the candidate pods, for example V(cluster-name=hastack).
    type: str
    default: ""
  target_label:
    description:
      - One label (key and value) that marks the target among the candidates,
        for example Patroni's C(role) V(primary).
    type: dict
    default: {}
  node:
    description: Node to drain, or (uncordon) a node to make schedulable.
    type: str
    default: ""
  nodes:
    description: Nodes to uncordon (RV(cordoned) of the drain).
    type: list
    elements: str
    default: []
  zone:
    description:
      - A zone, as the nodes' label C(topology.kubernetes.io/zone) names it (for example V(eu-west-1a)).
      - O(action=kill) deletes the pods of O(namespace) on the zone's nodes; O(action=drain) drains
        every node of the zone.
    type: str
    default: ""
  eviction_timeout_s:
    description: Seconds a drain keeps retrying evictions refused with HTTP 429 before it gives up.
    type: float
    default: 120
  retry_interval_s:
    description: Seconds between two rounds of evictions refused with HTTP 429.
    type: float
    default: 5
"""

EXAMPLES = r"""
- name: Kill the Patroni primary (grace period 0)
  hastack.ha.k8s_disrupt:
    action: kill
    kubeconfig: ~/.kube/eks
    namespace: hastack
    label_selector: cluster-name=hastack
    target_label: {role: primary}
  register: killed

- name: Drain the node of a Redis pod through the Eviction API
  hastack.ha.k8s_disrupt:
    action: drain
    kubeconfig: ~/.kube/eks
    namespace: hastack
    pod: hastack-redis-0
  register: drained

- name: Heal the drain
  hastack.ha.k8s_disrupt:
    action: uncordon
    kubeconfig: ~/.kube/eks
    nodes: "{{ drained.cordoned }}"

- name: Zone outage - kill every hastack pod in eu-west-1a (grace period 0)
  hastack.ha.k8s_disrupt:
    action: kill
    kubeconfig: ~/.kube/eks
    namespace: hastack
    zone: eu-west-1a
  register: zone_killed

- name: Zone outage - drain every node of eu-west-1a (PodDisruptionBudgets honoured)
  hastack.ha.k8s_disrupt:
    action: drain
    kubeconfig: ~/.kube/eks
    zone: eu-west-1a
    eviction_timeout_s: 120
  register: zone_drained
"""

RETURN = r"""
t_wall:
  description:
    - Wall-clock time (Unix seconds) when the first request of the disruption was sent.
    - V(null) in check mode.
  returned: kill, drain
  type: float
pod:
  description: The target pod (kill of one pod, drain by pod).
  returned: when a pod was the target
  type: str
uid:
  description: The uid of the killed pod (the precondition of its delete).
  returned: kill of one pod, not in check mode
  type: str
node:
  description: The node of the killed pod.
  returned: kill of one pod
  type: str
nodes:
  description: The drained nodes, or the nodes of the zone whose pods a zone kill deleted.
  returned: drain, kill of a zone
  type: list
  elements: str
pods:
  description: Pods a zone kill deleted (namespace/name); in check mode, those it would delete.
  returned: kill of a zone
  type: list
  elements: str
gone:
  description:
    - Pods deleted or replaced before their request arrived (namespace/name), by HTTP 404, or
      (zone kill) 409 from the uid precondition.
  returned: drain, kill of a zone, not in check mode
  type: list
  elements: str
errors:
  description: Pods whose delete the API server refused otherwise, with the status and message; the task fails.
  returned: kill of a zone, not in check mode
  type: list
  elements: str
zone:
  description: The zone whose pods a zone kill deleted.
  returned: kill of a zone
  type: str
cordoned:
  description:
    - The nodes this task cordoned (drain) or uncordoned (uncordon); give them to O(nodes) of the heal.
    - Also returned when a drain fails after cordoning.
  returned: drain, uncordon
  type: list
  elements: str
evicted:
  description: Pods evicted (namespace/name).
  returned: drain
  type: list
  elements: str
blocked:
  description: Pods whose eviction was still refused (HTTP 429) at O(eviction_timeout_s).
  returned: drain
  type: list
  elements: str
skipped:
  description: Pods the drain or the zone kill left alone, each as [namespace/name, reason].
  returned: drain, kill of a zone
  type: list
  elements: list
retries:
  description: Rounds of evictions retried after HTTP 429.
  returned: drain
  type: int
duration_s:
  description: Seconds the drain, or the zone kill's deletes, took.
  returned: drain, kill of a zone, not in check mode
  type: float
"""

import json  # noqa: E402
import traceback  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402
from ansible_collections.hastack.ha.plugins.module_utils import k8s_drill  # noqa: E402

try:
    import urllib3
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config import ConfigException

    KUBERNETES_IMPORT_ERROR = None
except ImportError:
    KUBERNETES_IMPORT_ERROR = traceback.format_exc()


class KubernetesApi:
    """request(method, path, body, content_type, query) -> (status, body) over the kubernetes package."""

    def __init__(self, kubeconfig: str, context: str, timeout_s: float = 10.0) -> None:
        self.client = k8s_config.new_client_from_config(config_file=kubeconfig, context=context or None)
        self.timeout_s = timeout_s

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        content_type: str | None = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One request; the API server's refusals and the network's errors come back as (status, body)."""
        method, url, headers, data, _post = self.client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params={"Accept": "application/json", "Content-Type": content_type or "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            # the pinned client (kubernetes 37): call_api returns the response whatever its status
            response = self.client.call_api(
                method, url, header_params=headers, body=data, _request_timeout=self.timeout_s
            )
            raw = response.read()
        except ApiException as error:
            return error.status or 0, {"message": f"{error.reason or ''} {error.body or ''}".strip()}
        except urllib3.exceptions.HTTPError as error:
            return 0, {"message": f"no answer from the API server within {self.timeout_s} s: {error}"}
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            payload = {"message": raw.decode("utf-8", "replace")}
        return response.status, payload if isinstance(payload, dict) else {"message": str(payload)}


TARGETS = {"kill": ("pod", "target_label", "zone"), "drain": ("node", "zone", "pod", "target_label")}


def one_target(params: dict[str, Any], action: str) -> str:
    """The one target option of the action that is set; an error naming them all otherwise."""
    given = [k for k in TARGETS[action] if params[k]]
    if len(given) != 1:
        got = ", ".join(f"{k}={params[k]!r}" for k in given) or "none"
        raise k8s_drill.DrillTargetError(f"{action} needs exactly one of {', '.join(TARGETS[action])}; got {got}")
    return given[0]


def kill_zone(p: dict[str, Any], check: bool, api: Any, clock: Any) -> dict[str, Any]:
    """Kill of a zone: every pod of the namespace on the zone's nodes (what a drain leaves alone excepted)."""
    nodes = k8s_drill.list_nodes(api)
    pods = k8s_drill.list_pods(api, p["namespace"], labelSelector=p["label_selector"])
    plan = k8s_drill.zone_kill_plan(nodes, pods, p["zone"])
    skipped = [list(s) for s in plan.skipped]
    if not plan.kill:
        selected = f" with labels {p['label_selector']}" if p["label_selector"] else ""
        left = "; left alone: " + ", ".join(f"{n} ({why})" for n, why in plan.skipped) if plan.skipped else ""
        raise k8s_drill.DrillTargetError(
            f"no pod to kill in namespace {p['namespace']}{selected} on the nodes of zone {p['zone']} "
            f"({', '.join(plan.nodes)}){left}"
        )
    if check:
        names = [k8s_drill.pod_name(q) for q in plan.kill]
        return {"changed": True, "zone": plan.zone, "nodes": plan.nodes, "pods": names, "skipped": skipped,
                "t_wall": None}  # fmt: skip
    result = k8s_drill.kill_zone(api, plan, clock)
    out = {"changed": True, **vars(result), "skipped": skipped}
    if result.errors:
        out["failed"] = True
        out["msg"] = (
            f"kill of zone {result.zone}: the API server refused {len(result.errors)} of {len(plan.kill)} "
            f"deletes ({'; '.join(result.errors)}); the other pods were deleted."
        )
    return out


def run(module: Any, api: Any, clock: Any) -> dict[str, Any]:
    """The module's logic over an API client (the unit tests pass a fake one)."""
    p = module.params
    action, check = p["action"], module.check_mode
    if action == "uncordon":
        names = [n for n in [*p["nodes"], p["node"]] if n]
        if not names:
            raise k8s_drill.DrillTargetError("uncordon needs nodes or node")
        return {"changed": True, "cordoned": names if check else k8s_drill.uncordon(api, names)}
    target = one_target(p, action)
    if action == "kill" and target == "zone":
        return kill_zone(p, check, api, clock)
    pod = None
    if target in ("pod", "target_label"):
        pods = k8s_drill.list_pods(api, p["namespace"], labelSelector=p["label_selector"])
        pod = k8s_drill.choose_pod(pods, p["pod"], p["target_label"])
    if action == "kill":
        meta = pod["metadata"]
        if check:
            return {"changed": True, "pod": meta["name"], "node": pod.get("spec", {}).get("nodeName"), "t_wall": None}
        return {"changed": True, **k8s_drill.kill(api, pod, clock)}
    nodes = k8s_drill.drain_targets(k8s_drill.list_nodes(api), [], node=p["node"], zone=p["zone"], pod=pod)
    if check:
        return {"changed": True, "nodes": [n["metadata"]["name"] for n in nodes], "t_wall": None}
    result = k8s_drill.drain(api, nodes, clock, p["eviction_timeout_s"], p["retry_interval_s"])
    out = {"changed": True, **vars(result), "skipped": [list(s) for s in result.skipped]}
    if pod is not None:
        out["pod"] = pod["metadata"]["name"]
    if not result.complete:
        out["failed"] = True
        out["msg"] = (
            f"drain of {', '.join(result.nodes)} incomplete after {p['eviction_timeout_s']} s: the "
            f"PodDisruptionBudget of {', '.join(result.blocked)} still allows no disruption (HTTP 429). "
            f"The nodes stay cordoned: uncordon {', '.join(result.cordoned)} (the drill's heal does)."
        )
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": ["kill", "drain", "uncordon"]},
            "kubeconfig": {"type": "path", "required": True},
            "context": {"type": "str", "default": ""},
            "namespace": {"type": "str", "default": "hastack"},
            "pod": {"type": "str", "default": ""},
            "label_selector": {"type": "str", "default": ""},
            "target_label": {"type": "dict", "default": {}},
            "node": {"type": "str", "default": ""},
            "nodes": {"type": "list", "elements": "str", "default": []},
            "zone": {"type": "str", "default": ""},
            "eviction_timeout_s": {"type": "float", "default": 120.0},
            "retry_interval_s": {"type": "float", "default": 5.0},
        },
        supports_check_mode=True,
    )
    if KUBERNETES_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)
    kubeconfig, context = module.params["kubeconfig"], module.params["context"]
    try:
        api = KubernetesApi(kubeconfig, context)
    except ConfigException as error:
        module.fail_json(msg=f"kubeconfig {kubeconfig} (context {context or 'its current one'}): {error}")
    try:
        result = run(module, api, k8s_drill.RealClock())
    except (k8s_drill.DrillTargetError, k8s_drill.K8sRequestError) as error:
        # a drain stopped by an error leaves nodes cordoned: the heal needs their names
        cordoned = getattr(error, "cordoned", [])
        module.fail_json(msg=f"{module.params['action']}: {error}", **({"cordoned": cordoned} if cordoned else {}))
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

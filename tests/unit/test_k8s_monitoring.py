"""The Kubernetes platform of prometheus_alertmanager and the stack's NetworkPolicies.

On fixtures/k8s/rendered/ (what the roles render; the render scenario checks
the fixtures are current):

- the rules and alertmanager.yml in the ConfigMaps are the hosts templates'
  output (promtool / amtool accept them), the receivers read their secrets
  from the files of the mounted Secret;
- prometheus.yml's kubernetes_sd_configs relabelling, applied here to the
  pods the roles render, gives the job names the rules select on;
- the NetworkPolicies of all four roles, evaluated on the rendered pods, let
  exactly the expected clients in.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.hastack.ha.plugins.filter.k8s import k8s_manifest_problems, k8s_schema_problems
from monitoring_templates import render_rules

RENDERED = Path(__file__).resolve().parent / "fixtures" / "k8s" / "rendered"
ROLES = ("patroni_postgres", "redis_sentinel", "prometheus_alertmanager", "app_backend")
TOOLS = pytest.mark.skipif(
    shutil.which("promtool") is None or shutil.which("amtool") is None,
    reason="promtool/amtool missing: `make unit` installs prometheus and prometheus-alertmanager",
)


def objects(role: str) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted((RENDERED / role).glob("*.yml"))]


def find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def monitoring() -> list[dict[str, Any]]:
    return copy.deepcopy(objects("prometheus_alertmanager"))


def without_header(text: str) -> list[str]:
    """Without the first line (ansible_managed: the test renderer writes another) and blank
    lines (Ansible trims the lines of block tags, the test renderer does not)."""
    return [line for line in text.splitlines()[1:] if line.strip()]


# --- configs: the hosts templates, checked ---------------------------------------


def test_the_rules_are_the_hosts_rules() -> None:
    rules = find(monitoring(), "ConfigMap", "hastack-prometheus-config")["data"]["hastack.rules.yml"]
    assert without_header(rules) == without_header(render_rules())


@TOOLS
def test_promtool_and_amtool_accept_the_configmaps(tmp_path: Path) -> None:
    objs = monitoring()
    (tmp_path / "rules.yml").write_text(
        find(objs, "ConfigMap", "hastack-prometheus-config")["data"]["hastack.rules.yml"]
    )
    (tmp_path / "am.yml").write_text(find(objs, "ConfigMap", "hastack-alertmanager-config")["data"]["alertmanager.yml"])
    rules = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 32 rules found" in rules.stdout
    am = subprocess.run(["amtool", "check-config", str(tmp_path / "am.yml")], capture_output=True, text=True)
    assert am.returncode == 0, am.stdout + am.stderr


def test_receivers_read_the_mounted_secret_files() -> None:
    objs = monitoring()
    config = yaml.safe_load(find(objs, "ConfigMap", "hastack-alertmanager-config")["data"]["alertmanager.yml"])
    pod = find(objs, "StatefulSet", "hastack-alertmanager")["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "receiver-secrets")["mountPath"]
    secret = next(v for v in pod["volumes"] if v["name"] == "receiver-secrets")["secret"]
    files = {f"{mount}/{item['path']}" for item in secret["items"]}
    critical = next(r for r in config["receivers"] if r["name"] == "critical")
    assert config["global"]["slack_api_url_file"] in files
    assert critical["pagerduty_configs"][0]["routing_key_file"] in files
    assert secret["secretName"] == "hastack-alertmanager"
    text = yaml.safe_dump(config)
    assert "hooks.slack.com" not in text and "routing_key:" not in text and "api_url:" not in text


def test_prometheus_keeps_30_days_on_50_gi_per_replica() -> None:
    sts = find(monitoring(), "StatefulSet", "hastack-prometheus")
    assert sts["spec"]["replicas"] == 2
    assert "--storage.tsdb.retention.time=30d" in sts["spec"]["template"]["spec"]["containers"][0]["args"]
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "50Gi"
    role = find(monitoring(), "ClusterRole", "hastack-prometheus")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]


# --- scrape discovery: the job names the rules select on --------------------------


def meta_labels(pod_template: dict[str, Any], namespace: str, node: str, port: int) -> dict[str, str]:
    """The __meta_kubernetes_pod_* labels Prometheus gives a discovered pod's port."""

    def sanitize(name: str) -> str:
        return re.sub(r"[^a-zA-Z0-9_]", "_", name)

    meta = pod_template["metadata"]
    labels = {"__address__": f"10.40.1.7:{port}", "__meta_kubernetes_namespace": namespace}
    labels |= {f"__meta_kubernetes_pod_label_{sanitize(k)}": v for k, v in meta.get("labels", {}).items()}
    labels |= {f"__meta_kubernetes_pod_annotation_{sanitize(k)}": v for k, v in meta.get("annotations", {}).items()}
    labels |= {"__meta_kubernetes_pod_name": "pod-0", "__meta_kubernetes_pod_node_name": node}
    return labels


def relabel(labels: dict[str, str], configs: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus's relabelling (replace, keep, drop; anchored regexes)."""
    labels = dict(labels)
    for c in configs:
        value = c.get("separator", ";").join(labels.get(s, "") for s in c.get("source_labels", []))
        match = re.fullmatch(c.get("regex", "(.*)"), value)
        action = c.get("action", "replace")
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            labels[c["target_label"]] = match.expand(c.get("replacement", "$1").replace("$", "\\"))
    return labels


def scrape_targets() -> dict[str, tuple[str, dict[str, str]]]:
    """Workload name -> (scrape job config name, target labels) for every rendered workload."""
    objs = monitoring()
    prometheus = yaml.safe_load(find(objs, "ConfigMap", "hastack-prometheus-config")["data"]["prometheus.yml"])
    out = {}
    for role in ROLES:
        for w in objects(role):
            if w["kind"] not in ("StatefulSet", "Deployment", "DaemonSet"):
                continue
            template = w["spec"]["template"]
            port = template["spec"]["containers"][0]["ports"][0]["containerPort"]
            labels = meta_labels(template, w["metadata"]["namespace"], "ip-10-40-1-7.eu-west-1.compute.internal", port)
            for job in prometheus["scrape_configs"]:
                assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
                target = relabel(labels, job["relabel_configs"])
                if target is not None:
                    assert w["metadata"]["name"] not in out, f"{w['metadata']['name']} is scraped by two jobs"
                    out[w["metadata"]["name"]] = (job["job_name"], target)
    return out


def test_discovered_pods_get_the_jobs_the_rules_select() -> None:
    targets = scrape_targets()
    jobs = {name: target["job"] for name, (_, target) in targets.items()}
    assert jobs == {
        "hastack": "patroni",
        "hastack-app": "app",
        "hastack-prometheus": "prometheus",
        "hastack-alertmanager": "alertmanager",
        "hastack-kube-state-metrics": "kube-state-metrics",
        "hastack-node-exporter": "node",
    }
    assert targets["hastack-node-exporter"][1]["__address__"] == "10.40.1.7:9100"
    assert targets["hastack-node-exporter"][1]["node"] == "ip-10-40-1-7.eu-west-1.compute.internal"
    assert targets["hastack-app"][1]["__metrics_path__"] == "/metrics"
    assert targets["hastack"][1]["__address__"] == "10.40.1.7:8008"  # Patroni's REST API, not PostgreSQL
    # kube-state-metrics alone in the job that honours the labels of its series
    config = yaml.safe_load(find(monitoring(), "ConfigMap", "hastack-prometheus-config")["data"]["prometheus.yml"])
    honoring = [j["job_name"] for j in config["scrape_configs"] if j.get("honor_labels")]
    assert honoring == ["kube-state-metrics"] and targets["hastack-kube-state-metrics"][0] == "kube-state-metrics"


def test_jobs_of_the_rules_that_kubernetes_does_not_scrape_yet() -> None:
    """postgres_exporter and redis_exporter have no sidecars on Kubernetes yet (docs/kubernetes.md)."""
    rules = yaml.safe_load(render_rules())
    selected = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            selected |= set(re.findall(r'job="([^"]+)"', rule["expr"]))
    scraped = {target["job"] for _, target in scrape_targets().values()}
    assert selected - scraped == {"postgres", "redis", "sentinel"}


# --- NetworkPolicies: who reaches whom --------------------------------------------


def workloads() -> list[tuple[str, str, dict[str, str], dict[str, int]]]:
    """(name, namespace, pod labels, port name -> number) of every rendered workload."""
    out = []
    for role in ROLES:
        for w in objects(role):
            if w["kind"] in ("StatefulSet", "Deployment", "DaemonSet"):
                ports = {p["name"]: p["containerPort"] for c in w["spec"]["template"]["spec"]["containers"]
                         for p in c.get("ports", [])}  # fmt: skip
                out.append(
                    (
                        w["metadata"]["name"],
                        w["metadata"]["namespace"],
                        w["spec"]["template"]["metadata"]["labels"],
                        ports,
                    )
                )
    return out


def allowed(policies: list[dict[str, Any]], source: tuple, target: tuple, port: str) -> bool:
    """May ``source`` open ``port`` (a port name of the target) on ``target``? Ingress policies only."""
    _, src_ns, src_labels, _ = source
    _, dst_ns, dst_labels, dst_ports = target
    selecting = [
        p for p in policies
        if p["metadata"]["namespace"] == dst_ns
        and all(dst_labels.get(k) == v for k, v in p["spec"]["podSelector"]["matchLabels"].items())
    ]  # fmt: skip
    if not selecting:
        return True  # not isolated
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            if not any(q["port"] in (port, dst_ports.get(port)) for q in rule.get("ports", [])):
                continue
            for peer in rule.get("from", []):
                if "ipBlock" in peer:
                    continue
                ns_ok = (
                    peer["namespaceSelector"]["matchLabels"].get("kubernetes.io/metadata.name") == src_ns
                    if "namespaceSelector" in peer
                    else src_ns == dst_ns
                )
                pod_ok = all(
                    src_labels.get(k) == v for k, v in peer.get("podSelector", {}).get("matchLabels", {}).items()
                )
                if ns_ok and pod_ok:
                    return True
    return False


def reachability() -> set[tuple[str, str, str]]:
    policies = [o for role in ROLES for o in objects(role) if o["kind"] == "NetworkPolicy"]
    pods = workloads()
    return {
        (src[0], dst[0], port)
        for src in pods
        for dst in pods
        for port in dst[3]
        if src[0] != dst[0] and allowed(policies, src, dst, port)
    }


def test_each_component_is_reachable_only_by_who_needs_it() -> None:
    assert reachability() == {
        # PostgreSQL: the app; Patroni's REST API: Prometheus (the members reach each other: same workload)
        ("hastack-app", "hastack", "postgresql"),
        ("hastack-prometheus", "hastack", "patroni"),
        # Redis and Sentinel: each other, the app, Prometheus
        ("hastack-sentinel", "hastack-redis", "redis"),
        ("hastack-app", "hastack-redis", "redis"),
        ("hastack-prometheus", "hastack-redis", "redis"),
        ("hastack-redis", "hastack-sentinel", "sentinel"),
        ("hastack-app", "hastack-sentinel", "sentinel"),
        ("hastack-prometheus", "hastack-sentinel", "sentinel"),
        # monitoring
        ("hastack-prometheus", "hastack-alertmanager", "web"),
        ("hastack-prometheus", "hastack-kube-state-metrics", "http-metrics"),
        ("hastack-prometheus", "hastack-kube-state-metrics", "telemetry"),
        ("hastack-prometheus", "hastack-node-exporter", "metrics"),
        ("hastack-prometheus", "hastack-app", "http"),
    }


def test_a_widened_policy_is_caught() -> None:
    """Dropping the port list of one rule lets everyone it names in on every port."""
    before = reachability()
    policy_file = RENDERED / "patroni_postgres" / "40-networkpolicy.yml"
    policy = yaml.safe_load(policy_file.read_text(encoding="utf-8"))
    policies = [o for role in ROLES for o in objects(role) if o["kind"] == "NetworkPolicy" and o != policy]
    policy["spec"]["ingress"][0]["ports"].append({"port": "patroni", "protocol": "TCP"})
    pods = workloads()
    app = next(p for p in pods if p[0] == "hastack-app")
    patroni = next(p for p in pods if p[0] == "hastack")
    assert ("hastack-app", "hastack", "patroni") not in before
    assert allowed([*policies, policy], app, patroni, "patroni")


# --- a broken manifest of the new roles is caught ----------------------------------


def test_semantic_and_schema_checks_catch_broken_monitoring_and_app_objects() -> None:
    objs = monitoring()
    assert k8s_manifest_problems(objs) == []
    pdb = find(objs, "PodDisruptionBudget", "hastack-alertmanager")
    pdb["spec"]["minAvailable"] = 3
    ds = find(objs, "DaemonSet", "hastack-node-exporter")
    del ds["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    sts = find(objs, "StatefulSet", "hastack-prometheus")
    sts["spec"]["template"]["spec"]["topologySpreadConstraints"].pop(0)
    problems = k8s_manifest_problems(objs)
    assert any(
        p.startswith("PodDisruptionBudget/hastack-alertmanager: minAvailable 3 with 3 replicas") for p in problems
    )
    assert "DaemonSet/hastack-node-exporter container node-exporter: no livenessProbe" in problems
    assert (
        "StatefulSet/hastack-prometheus: 2 replicas and no topology spread on topology.kubernetes.io/zone" in problems
    )

    app = copy.deepcopy(objects("app_backend"))
    deployment = find(app, "Deployment", "hastack-app")
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "512Mi"
    assert k8s_manifest_problems(app) == [
        "Deployment/hastack-app container app: memory request 256Mi != limit 512Mi "
        "(the pod can be killed under node memory pressure)"
    ]
    deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]["httpGet"]["paht"] = "/health"
    assert len(k8s_schema_problems({"50-deployment.yml": deployment}, "1.35")) == 1

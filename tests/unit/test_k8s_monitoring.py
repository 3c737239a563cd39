"""The Kubernetes platform of prometheus_alertmanager and the stack's NetworkPolicies.

On fixtures/k8s/rendered/ (what the roles render; the render scenario checks
the fixtures are current):

- the rules and alertmanager.yml in the ConfigMaps are the hosts templates'
  output (promtool / amtool accept them), the receivers read their secrets
  from the files of the mounted Secret;
- prometheus.yml's kubernetes_sd_configs relabelling, applied here to every
  port of the pods the roles render as Prometheus discovers them, gives every
  job the rules select on a source (the exporter sidecars: postgres, redis,
  sentinel), with the labels the hosts' jobs have;
- the NetworkPolicies of all four roles, evaluated on the rendered pods and
  the roles Job, let exactly the expected clients in (the exporters: only
  Prometheus).
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
from monitoring_templates import render_prometheus, render_rules

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


# The rules as the role renders them for Kubernetes: the SLO from the app's own
# counters (prometheus_alertmanager_slo_source app; no load balancer metrics there)
K8S_RULES = {"prometheus_alertmanager_slo_source": "app"}


def test_the_rules_are_the_hosts_rules() -> None:
    rules = find(monitoring(), "ConfigMap", "hastack-prometheus-config")["data"]["hastack.rules.yml"]
    assert without_header(rules) == without_header(render_rules(**K8S_RULES))


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

POD_IP = "10.40.1.7"
NODE = "ip-10-40-1-7.eu-west-1.compute.internal"
# Workloads of all four roles whose pods Prometheus discovers.
WORKLOAD_KINDS = ("StatefulSet", "Deployment", "DaemonSet")


def all_objects() -> list[dict[str, Any]]:
    return [o for role in ROLES for o in copy.deepcopy(objects(role))]


def meta_labels(pod_template: dict[str, Any], namespace: str) -> dict[str, str]:
    """The __meta_kubernetes_pod_* labels Prometheus gives every target of a discovered pod."""

    def sanitize(name: str) -> str:
        return re.sub(r"[^a-zA-Z0-9_]", "_", name)

    meta = pod_template["metadata"]
    labels = {"__meta_kubernetes_namespace": namespace}
    labels |= {f"__meta_kubernetes_pod_label_{sanitize(k)}": v for k, v in meta.get("labels", {}).items()}
    labels |= {f"__meta_kubernetes_pod_annotation_{sanitize(k)}": v for k, v in meta.get("annotations", {}).items()}
    labels |= {"__meta_kubernetes_pod_name": "pod-0", "__meta_kubernetes_pod_node_name": NODE}
    return labels


def discovered(workload: dict[str, Any]) -> list[dict[str, str]]:
    """The targets kubernetes_sd_configs (role pod) makes of one of the workload's pods:
    one per declared container port, and one without a port for each container that
    declares none (init containers included)."""
    template = workload["spec"]["template"]
    base = meta_labels(template, workload["metadata"]["namespace"])
    spec = template["spec"]
    out = []
    for init, containers in ((False, spec["containers"]), (True, spec.get("initContainers", []))):
        for c in containers:
            common = base | {
                "__meta_kubernetes_pod_container_name": c["name"],
                "__meta_kubernetes_pod_container_init": str(init).lower(),
            }
            if not c.get("ports"):
                out.append(common | {"__address__": POD_IP})
            for port in c.get("ports", []):
                out.append(
                    common
                    | {
                        "__address__": f"{POD_IP}:{port['containerPort']}",
                        "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                        "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                    }
                )
    return out


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


def scrape_targets(objs: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, str]]]]:
    """job label -> workload name -> the distinct targets of one of its pods, as Prometheus
    makes them: the job's defaults (job = job_name), relabelling, then instance from the
    address and the __ labels gone but for the address and path; targets with the same
    labels and URL are one (Prometheus deduplicates them)."""
    prometheus = yaml.safe_load(find(monitoring(), "ConfigMap", "hastack-prometheus-config")["data"]["prometheus.yml"])
    out: dict[str, dict[str, list[dict[str, str]]]] = {}
    for w in (o for o in objs if o["kind"] in WORKLOAD_KINDS):
        for job in prometheus["scrape_configs"]:
            assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
            defaults = {"job": job["job_name"], "__metrics_path__": "/metrics", "__scheme__": "http"}
            for labels in discovered(w):
                target = relabel(defaults | labels, job["relabel_configs"])
                if target is None:
                    continue
                target.setdefault("instance", target["__address__"])
                kept = {
                    k: v
                    for k, v in target.items()
                    if not k.startswith("__") or k in ("__address__", "__metrics_path__")
                }
                pods = out.setdefault(kept["job"], {}).setdefault(w["metadata"]["name"], [])
                if kept not in pods:
                    pods.append(kept)
    return out


def rule_jobs() -> set[str]:
    """The job label values the alert and recording rules select on (job="a", job=~"a|b")."""
    rules = yaml.safe_load(render_rules(**K8S_RULES))
    return {
        job
        for g in rules["groups"]
        for r in g["rules"]
        for jobs in re.findall(r'job=~?"([^"]+)"', r["expr"])
        for job in jobs.split("|")
    }


def test_discovered_pods_get_the_jobs_the_rules_select() -> None:
    targets = scrape_targets(all_objects())
    assert {job: sorted(pods) for job, pods in targets.items()} == {
        "patroni": ["hastack"],
        "postgres": ["hastack"],
        "pgbackrest": ["hastack"],
        "redis": ["hastack-redis"],
        "sentinel": ["hastack-sentinel"],
        "app": ["hastack-app"],
        "prometheus": ["hastack-prometheus"],
        "alertmanager": ["hastack-alertmanager"],
        "kube-state-metrics": ["hastack-kube-state-metrics"],
        "node": ["hastack-node-exporter"],
    }
    # every port of a pod is discovered, yet each pod is one target of each job
    assert all(len(t) == 1 for pods in targets.values() for t in pods.values())
    one = {job: {name: t[0] for name, t in pods.items()} for job, pods in targets.items()}
    assert one["node"]["hastack-node-exporter"]["__address__"] == "10.40.1.7:9100"
    assert one["node"]["hastack-node-exporter"]["node"] == NODE
    assert one["app"]["hastack-app"]["__metrics_path__"] == "/metrics"
    assert one["patroni"]["hastack"]["__address__"] == "10.40.1.7:8008"  # Patroni's REST API, not PostgreSQL
    assert one["postgres"]["hastack"]["__address__"] == "10.40.1.7:9187"  # the sidecars, on hosts' ports
    assert one["pgbackrest"]["hastack"]["__address__"] == "10.40.1.7:9854"  # hosts: node's textfile collector
    assert one["redis"]["hastack-redis"]["__address__"] == "10.40.1.7:9121"
    assert one["sentinel"]["hastack-sentinel"]["__address__"] == "10.40.1.7:9122"
    # kube-state-metrics alone in the job that honours the labels of its series
    config = yaml.safe_load(find(monitoring(), "ConfigMap", "hastack-prometheus-config")["data"]["prometheus.yml"])
    honoring = [j["job_name"] for j in config["scrape_configs"] if j.get("honor_labels")]
    assert honoring == ["kube-state-metrics"]


def test_every_job_the_rules_select_has_a_scrape_source_on_kubernetes() -> None:
    # pgbackrest: PostgresBackupTooOld reads job node on hosts (textfile collector), pgbackrest here
    assert rule_jobs() == {"node", "postgres", "pgbackrest", "patroni", "redis", "sentinel", "app"}
    assert rule_jobs() - set(scrape_targets(all_objects())) == set()


@pytest.mark.parametrize(
    ("workload", "container", "job"),
    [
        ("hastack", "postgres-exporter", "postgres"),
        ("hastack", "pgbackrest", "pgbackrest"),
        ("hastack-redis", "redis-exporter", "redis"),
        ("hastack-sentinel", "sentinel-exporter", "sentinel"),
    ],
)
def test_without_its_sidecar_a_job_of_the_rules_has_no_source(workload: str, container: str, job: str) -> None:
    objs = all_objects()
    pod = find(objs, "StatefulSet", workload)["spec"]["template"]["spec"]
    names = [c["name"] for c in pod["containers"]]
    assert container in names
    pod["containers"] = [c for c in pod["containers"] if c["name"] != container]
    assert rule_jobs() - set(scrape_targets(objs)) == {job}


def test_exporter_targets_carry_the_labels_of_their_hosts_jobs() -> None:
    """The rules group and inhibit by the hosts' target labels (node; cluster for Redis and
    Sentinel): the sidecars' targets have them, with the node the pod runs on."""
    nodes = ["node-a", "node-b", "node-c"]
    hosts = yaml.safe_load(
        render_prometheus(
            {"all": nodes, "monitoring": ["node-a"], "postgres_cluster": nodes, "redis_cluster": nodes},
            {h: {"ha_address": f"127.0.0.{11 + i}"} for i, h in enumerate(nodes)},
            prometheus_alertmanager_platform="hosts",
            _prometheus_alertmanager_rules_file="/etc/hastack/rules.yml",
        )
    )
    targets = scrape_targets(all_objects())
    for job in ("postgres", "redis", "sentinel"):
        static = next(j for j in hosts["scrape_configs"] if j["job_name"] == job)["static_configs"][0]["labels"]
        (target,) = next(iter(targets[job].values()))
        assert static["node"] == "node-a"
        assert {k: target[k] for k in static} == static | {"node": NODE}, job
    assert targets["redis"]["hastack-redis"][0]["cluster"] == "hastack"


# --- NetworkPolicies: who reaches whom --------------------------------------------


def workloads() -> list[tuple[str, str, dict[str, str], dict[str, int]]]:
    """(name, namespace, pod labels, port name -> number) of every rendered workload and Job
    (a Job without the hash of its pod template that ends its name)."""
    out = []
    for role in ROLES:
        for w in objects(role):
            if w["kind"] in (*WORKLOAD_KINDS, "Job"):
                ports = {p["name"]: p["containerPort"] for c in w["spec"]["template"]["spec"]["containers"]
                         for p in c.get("ports", [])}  # fmt: skip
                name = w["metadata"]["name"]
                out.append(
                    (
                        re.sub(r"-[0-9a-f]{10}$", "", name) if w["kind"] == "Job" else name,
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
        # PostgreSQL: the app, its migration Job and the roles Job; Patroni's REST API and
        # postgres_exporter: Prometheus (the members reach each other: same workload)
        ("hastack-app", "hastack", "postgresql"),
        ("hastack-app-migrate", "hastack", "postgresql"),
        ("hastack-roles", "hastack", "postgresql"),
        ("hastack-prometheus", "hastack", "patroni"),
        ("hastack-prometheus", "hastack", "prom-postgres"),
        ("hastack-prometheus", "hastack", "prom-pgbackrest"),
        # Redis and Sentinel: each other and the app; their exporters: Prometheus
        ("hastack-sentinel", "hastack-redis", "redis"),
        ("hastack-app", "hastack-redis", "redis"),
        ("hastack-prometheus", "hastack-redis", "prom-redis"),
        ("hastack-redis", "hastack-sentinel", "sentinel"),
        ("hastack-app", "hastack-sentinel", "sentinel"),
        ("hastack-prometheus", "hastack-sentinel", "prom-sentinel"),
        # monitoring
        ("hastack-prometheus", "hastack-alertmanager", "web"),
        ("hastack-prometheus", "hastack-kube-state-metrics", "http-metrics"),
        ("hastack-prometheus", "hastack-kube-state-metrics", "telemetry"),
        ("hastack-prometheus", "hastack-node-exporter", "metrics"),
        ("hastack-prometheus", "hastack-app", "http"),
    }


def test_only_prometheus_reaches_the_exporters() -> None:
    reach = reachability()
    metrics = {(src, dst, port) for src, dst, port in reach if port.startswith("prom-")}
    assert {(dst, port) for _, dst, port in metrics} == {
        ("hastack", "prom-postgres"),
        ("hastack", "prom-pgbackrest"),
        ("hastack-redis", "prom-redis"),
        ("hastack-sentinel", "prom-sentinel"),
    }
    assert {src for src, _, _ in metrics} == {"hastack-prometheus"}
    # and Prometheus reaches no data port of PostgreSQL, Redis or Sentinel
    assert not {port for src, _, port in reach if src == "hastack-prometheus"} & {"postgresql", "redis", "sentinel"}


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

"""hastack.ha Kubernetes filters: manifest checks and live verdicts.

Manifest checks run on fixtures/k8s/rendered/<role>/*.yml, the objects the
roles rendered (copied from the render scenario's output; the scenario itself
runs the same filters on what the templates produce now). Each check is shown
catching one seeded fault in a copy of them, and staying silent on the
unchanged set.

Live verdicts run on fixtures/k8s/live/*.json: k8s_info-shaped Node, Pod,
PodDisruptionBudget and StatefulSet objects (written by
generate_live_fixtures.py: no cluster exists here to capture them from).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.hastack.ha.plugins.filter.k8s import (
    FilterModule,
    image_problem,
    k8s_container_problems,
    k8s_job_problems,
    k8s_manifest_problems,
    k8s_pdb_problems,
    k8s_rollout_problems,
    k8s_selector_problems,
    k8s_spread_problems,
    pdb_headroom,
    zone_skew,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "k8s"
ROLES = ("patroni_postgres", "redis_sentinel", "prometheus_alertmanager", "app_backend")
# Patroni sets role=primary|replica on its pods at run time.
RUNTIME_LABELS = {"patroni_postgres": ["role"]}


def rendered(role: str) -> list[dict[str, Any]]:
    files = sorted((FIXTURES / "rendered" / role).glob("*.yml"))
    assert files, f"no rendered fixtures for {role}"
    return [yaml.safe_load(f.read_text(encoding="utf-8")) for f in files]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    for o in objects:
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name):
            return o
    raise AssertionError(f"no {kind}/{name} in the fixtures")


def live(scenario: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "live" / f"{scenario}.json").read_text(encoding="utf-8"))


# --- the rendered objects pass every check ---------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_rendered_manifests_have_no_problems(role: str) -> None:
    assert k8s_manifest_problems(rendered(role), RUNTIME_LABELS.get(role, [])) == []


def test_fixtures_cover_the_issue_list() -> None:
    objects = rendered("patroni_postgres")
    sts = find(objects, "StatefulSet")
    assert sts["spec"]["replicas"] == 3
    sc = find(objects, "StorageClass")
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer" and sc["parameters"]["type"] == "gp3"
    assert find(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    zone = sts["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert (zone["topologyKey"], zone["maxSkew"], zone["minDomains"]) == ("topology.kubernetes.io/zone", 1, 3)
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readiness"
    assert container["livenessProbe"]["httpGet"]["path"] == "/liveness"
    patroni_yml = yaml.safe_load(find(objects, "ConfigMap")["data"]["patroni.yml"])
    assert patroni_yml["kubernetes"]["use_endpoints"] is False
    assert {r["resources"][0] for r in find(objects, "Role")["rules"]} == {"configmaps", "pods"}
    redis = rendered("redis_sentinel")
    conf = find(redis, "ConfigMap")["data"]
    assert "sentinel announce-hostnames yes" in conf["sentinel.conf"]
    assert "sentinel resolve-hostnames yes" in conf["sentinel.conf"]
    assert "min-replicas-to-write 1" in conf["redis.conf"]
    for s in (o for o in redis if o["kind"] == "StatefulSet"):
        assert s["spec"]["podManagementPolicy"] == "OrderedReady"


@pytest.mark.parametrize("role", ROLES)
def test_no_secret_value_is_rendered(role: str) -> None:
    """Secrets reach the pods from a Secret only (secretKeyRef, or a mounted Secret); no Secret object or password."""
    objects = rendered(role)
    assert not [o for o in objects if o["kind"] == "Secret"]
    text = json.dumps(objects)
    assert "secretKeyRef" in text or '"secretName"' in text
    for o in objects:
        for value in (o.get("data") or {}).values():
            for line in value.splitlines():
                words = line.split()
                if words and words[0] in ("requirepass", "masterauth", "password:"):
                    raise AssertionError(f"{o['kind']}/{o['metadata']['name']} renders a password: {line}")
                if len(words) > 1 and words[:2] in (["sentinel", "auth-pass"], ["sentinel", "sentinel-pass"]):
                    raise AssertionError(f"{o['kind']}/{o['metadata']['name']} renders a password: {line}")


# --- each manifest check catches its fault ---------------------------------


def patroni() -> list[dict[str, Any]]:
    return copy.deepcopy(rendered("patroni_postgres"))


def redis() -> list[dict[str, Any]]:
    return copy.deepcopy(rendered("redis_sentinel"))


def pod_spec(objects: list[dict[str, Any]], name: str | None = None) -> dict[str, Any]:
    return find(objects, "StatefulSet", name)["spec"]["template"]["spec"]


def test_service_selector_that_matches_no_pod_is_caught() -> None:
    objects = patroni()
    find(objects, "Service", "hastack-primary")["spec"]["selector"]["application"] = "patroni-typo"
    assert k8s_selector_problems(objects, ["role"]) == [
        "Service/hastack-primary: spec.selector {'application': 'patroni-typo', 'cluster-name': 'hastack', "
        "'role': 'primary'} matches the pods of no rendered workload"
    ]


def test_runtime_label_is_only_ignored_when_named() -> None:
    problems = k8s_selector_problems(patroni())
    assert sorted(p.split(":")[0] for p in problems) == ["Service/hastack-primary", "Service/hastack-replica"]


def test_workload_selector_not_matching_its_template_is_caught() -> None:
    objects = redis()
    find(objects, "StatefulSet", "hastack-sentinel")["spec"]["template"]["metadata"]["labels"][
        "app.kubernetes.io/name"] = "sentinel"  # fmt: skip
    problems = k8s_selector_problems(objects)
    assert problems[0].startswith("StatefulSet/hastack-sentinel: spec.selector")
    # and everything that selected those pods misses them now
    missed = {p.split(":")[0] for p in problems[1:]}
    assert missed == {f"{kind}/hastack-sentinel" for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy")}


def test_empty_selector_is_caught() -> None:
    objects = redis()
    find(objects, "NetworkPolicy", "hastack-redis")["spec"]["podSelector"] = {}
    assert k8s_selector_problems(objects) == [
        "NetworkPolicy/hastack-redis: spec.podSelector.matchLabels is empty (it would select every pod or none)"
    ]


def test_pdb_min_available_equal_to_replicas_is_caught() -> None:
    objects = patroni()
    find(objects, "PodDisruptionBudget")["spec"]["minAvailable"] = 3
    problems = k8s_pdb_problems(objects)
    assert len(problems) == 1
    assert "minAvailable 3 with 3 replicas of StatefulSet/hastack" in problems[0]
    assert "drains block" in problems[0]


def test_pdb_percentage_is_resolved() -> None:
    objects = patroni()
    find(objects, "PodDisruptionBudget")["spec"]["minAvailable"] = "100%"
    assert len(k8s_pdb_problems(objects)) == 1
    find(objects, "PodDisruptionBudget")["spec"]["minAvailable"] = "60%"  # ceil(1.8) = 2
    assert k8s_pdb_problems(objects) == []


def test_pdb_with_both_min_and_max_is_caught() -> None:
    objects = patroni()
    find(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] = 1
    assert k8s_pdb_problems(objects) == [
        "PodDisruptionBudget/hastack-patroni: sets both minAvailable and maxUnavailable; set exactly one"
    ]


def test_pdb_max_unavailable_zero_is_caught() -> None:
    objects = redis()
    spec = find(objects, "PodDisruptionBudget", "hastack-redis")["spec"]
    del spec["minAvailable"]
    spec["maxUnavailable"] = 0
    assert len(k8s_pdb_problems(objects)) == 1


def test_workload_without_pdb_is_caught() -> None:
    objects = [o for o in redis() if o["metadata"]["name"] != "hastack-sentinel" or o["kind"] != "PodDisruptionBudget"]
    assert k8s_pdb_problems(objects) == [
        "StatefulSet/hastack-sentinel: 3 replicas and no PodDisruptionBudget selects them"
    ]


def test_pdb_selecting_two_workloads_is_caught() -> None:
    objects = redis()
    find(objects, "PodDisruptionBudget", "hastack-redis")["spec"]["selector"]["matchLabels"] = {
        "app.kubernetes.io/instance": "hastack"}  # fmt: skip
    problems = k8s_pdb_problems(objects)
    assert problems[0].startswith("PodDisruptionBudget/hastack-redis: selects the pods of 2 workloads")


def test_spread_selector_not_matching_pods_is_caught() -> None:
    objects = patroni()
    pod_spec(objects)["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]["cluster-name"] = "other"
    problems = k8s_spread_problems(objects)
    assert len(problems) == 1
    assert problems[0].startswith("StatefulSet/hastack: topology spread on topology.kubernetes.io/zone: labelSelector")


def test_missing_zone_spread_and_loose_skew_are_caught() -> None:
    objects = redis()
    pod_spec(objects, "hastack-redis")["topologySpreadConstraints"].pop(0)
    zone = pod_spec(objects, "hastack-sentinel")["topologySpreadConstraints"][0]
    zone["maxSkew"] = 2
    assert k8s_spread_problems(objects) == [
        "StatefulSet/hastack-redis: 3 replicas and no topology spread on topology.kubernetes.io/zone",
        "StatefulSet/hastack-sentinel: topology spread on topology.kubernetes.io/zone is maxSkew 2, "
        "DoNotSchedule; rule: maxSkew 1, DoNotSchedule",
    ]


def test_min_domains_with_schedule_anyway_is_caught() -> None:
    objects = patroni()
    pod_spec(objects)["topologySpreadConstraints"][0]["whenUnsatisfiable"] = "ScheduleAnyway"
    problems = k8s_spread_problems(objects)
    assert any("minDomains needs whenUnsatisfiable DoNotSchedule" in p for p in problems)
    assert any("rule: maxSkew 1, DoNotSchedule" in p for p in problems)


def test_container_without_probe_is_caught() -> None:
    objects = redis()
    del pod_spec(objects, "hastack-sentinel")["containers"][0]["readinessProbe"]
    assert k8s_container_problems(objects) == ["StatefulSet/hastack-sentinel container sentinel: no readinessProbe"]


def test_container_without_resources_or_with_memory_overcommit_is_caught() -> None:
    objects = patroni()
    container = pod_spec(objects)["containers"][0]
    container["resources"]["limits"]["memory"] = "2Gi"
    assert k8s_container_problems(objects) == [
        "StatefulSet/hastack container patroni: memory request 1Gi != limit 2Gi "
        "(the pod can be killed under node memory pressure)"
    ]
    del container["resources"]
    assert k8s_container_problems(objects) == [
        "StatefulSet/hastack container patroni: resources without requests.cpu, requests.memory, limits.memory"
    ]


def test_init_container_with_latest_image_is_caught() -> None:
    objects = redis()
    pod_spec(objects, "hastack-redis")["initContainers"][0]["image"] = "redis:latest"
    assert k8s_container_problems(objects) == [
        "StatefulSet/hastack-redis init container prepare: image redis:latest is tagged latest"
    ]


def test_job_containers_are_sized_and_pinned_but_not_probed() -> None:
    objects = patroni()
    job = find(objects, "Job")
    name = job["metadata"]["name"]
    psql = job["spec"]["template"]["spec"]["containers"][0]
    assert "readinessProbe" not in psql and "livenessProbe" not in psql
    assert k8s_container_problems(objects) == []
    psql["image"] = "hastack/patroni"
    del psql["resources"]["limits"]
    assert k8s_container_problems(objects) == [
        f"Job/{name} container psql: resources without limits.memory",
        f"Job/{name} container psql: image hastack/patroni has no tag (means latest)",
    ]


def test_job_that_retries_forever_or_is_never_cleaned_up_is_caught() -> None:
    objects = patroni()
    job = find(objects, "Job")
    name = job["metadata"]["name"]
    assert k8s_job_problems(objects) == []
    del job["spec"]["ttlSecondsAfterFinished"]
    del job["spec"]["backoffLimit"]
    job["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert k8s_job_problems(objects) == [
        f"Job/{name}: restartPolicy Always; rule: OnFailure or Never",
        f"Job/{name}: spec.backoffLimit not set (a whole number >= 0)",
        f"Job/{name}: spec.ttlSecondsAfterFinished not set (a whole number >= 0)",
    ]
    assert len(k8s_manifest_problems(objects, ["role"])) == 3


def test_network_policy_of_a_job_selects_its_pods() -> None:
    objects = patroni()
    assert k8s_selector_problems(objects, ["role"]) == []
    find(objects, "Job")["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = "other"
    assert k8s_selector_problems(objects, ["role"]) == [
        "NetworkPolicy/hastack-roles: spec.podSelector.matchLabels {'app.kubernetes.io/name': 'postgres-roles', "
        "'app.kubernetes.io/instance': 'hastack'} matches the pods of no rendered workload"
    ]


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("redis:7.0.15-bookworm", None),
        ("registry.example.com:5000/hastack/patroni:4.1.5-pg15", None),
        ("redis@sha256:" + "a" * 64, None),
        ("redis", "image redis has no tag (means latest)"),
        ("registry.example.com:5000/redis", "image registry.example.com:5000/redis has no tag (means latest)"),
        ("redis:latest", "image redis:latest is tagged latest"),
        ("", "no image"),
    ],
)
def test_image_problem(image: str, problem: str | None) -> None:
    assert image_problem(image) == problem


def test_manifest_problems_collects_every_check() -> None:
    objects = patroni()
    pod_spec(objects)["containers"][0]["image"] = "hastack/patroni"
    find(objects, "PodDisruptionBudget")["spec"]["minAvailable"] = 0
    problems = k8s_manifest_problems(objects, ["role"])
    assert len(problems) == 2


def test_bad_input_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="k8s_pdb_problems: expected a list of Kubernetes objects"):
        k8s_pdb_problems("not a list")


# --- live verdicts on k8s_info-shaped objects -------------------------------


def test_zone_skew_healthy() -> None:
    data = live("healthy")
    spread = zone_skew(data["pods"], data["nodes"])
    assert spread == {
        "counts": {"eu-west-1a": 1, "eu-west-1b": 1, "eu-west-1c": 1},
        "eligible_zones": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
        "skew": 0,
        "unscheduled": [],
        "unknown_zone": [],
    }


def test_zone_skew_two_in_one_zone() -> None:
    data = live("skewed")
    spread = zone_skew(data["pods"]["resources"], data["nodes"]["resources"])
    assert spread["counts"] == {"eu-west-1a": 2, "eu-west-1b": 1, "eu-west-1c": 0}
    assert spread["skew"] == 2


def test_zone_skew_ignores_zones_without_schedulable_nodes() -> None:
    """As the scheduler does: a cordoned, NotReady zone is no domain; the pending pod is listed."""
    data = live("zone_c_cordoned")
    spread = zone_skew(data["pods"], data["nodes"])
    assert spread["eligible_zones"] == ["eu-west-1a", "eu-west-1b"]
    assert spread["counts"]["eu-west-1c"] == 0
    assert spread["skew"] == 0
    assert spread["unscheduled"] == ["hastack-2"]


def test_zone_skew_skips_terminating_pods() -> None:
    data = live("pending")
    spread = zone_skew(data["pods"], data["nodes"])
    assert spread["counts"] == {"eu-west-1a": 1, "eu-west-1b": 0, "eu-west-1c": 0}
    assert spread["skew"] == 1
    assert spread["unscheduled"] == ["hastack-2"]


def test_zone_skew_pod_on_unlabelled_node() -> None:
    data = live("healthy")
    nodes = copy.deepcopy(data["nodes"]["resources"])
    del nodes[0]["metadata"]["labels"]["topology.kubernetes.io/zone"]
    assert zone_skew(data["pods"], nodes)["unknown_zone"] == ["hastack-0"]


def test_pdb_headroom() -> None:
    assert pdb_headroom(live("healthy")["pdbs"]) == [
        {
            "name": "hastack-patroni",
            "namespace": "hastack",
            "disruptions_allowed": 1,
            "current_healthy": 3,
            "desired_healthy": 2,
            "expected_pods": 3,
            "observed": True,
            "ok": True,
        }
    ]
    blocked = pdb_headroom(live("pdb_blocked")["pdbs"])[0]
    assert (blocked["ok"], blocked["disruptions_allowed"], blocked["current_healthy"]) == (False, 0, 2)
    stale = pdb_headroom(live("rollout")["pdbs"])[0]
    assert (stale["ok"], stale["observed"]) == (False, False)


def test_rollout_problems() -> None:
    assert k8s_rollout_problems(live("healthy")["statefulsets"]) == []
    assert k8s_rollout_problems(live("pdb_blocked")["statefulsets"]) == ["StatefulSet/hastack: readyReplicas 2 of 3"]
    assert k8s_rollout_problems(live("rollout")["statefulsets"]) == [
        "StatefulSet/hastack: updatedReplicas 1 of 3",
        "StatefulSet/hastack: currentReplicas 2 of 3",
        "StatefulSet/hastack: update to revision hastack-7f9b6c4d58 not complete (current hastack-5d7c9b8f6d)",
    ]
    sts = copy.deepcopy(live("healthy")["statefulsets"]["resources"])
    sts[0]["metadata"]["generation"] = 2
    assert k8s_rollout_problems(sts) == ["StatefulSet/hastack: the controller has not seen generation 2 yet"]


# --- the plugin ------------------------------------------------------------------


def test_filters_are_registered_with_sidecar_docs() -> None:
    filters: dict[str, Callable[..., Any]] = FilterModule().filters()
    docs_dir = Path(__file__).resolve().parents[2] / "plugins" / "filter"
    for name in filters:
        doc = yaml.safe_load((docs_dir / f"{name}.yml").read_text(encoding="utf-8"))
        assert doc["DOCUMENTATION"]["name"] == name

"""Strict schema validation of the rendered objects (kubernetes-validate, offline).

Every object in fixtures/k8s/rendered/ is validated against the OpenAPI
schemas kubernetes-validate ships for each Kubernetes version of the matrix,
strictly: a field the schema does not know fails. The render scenario
(molecule/render) runs the same validation over what the templates produce
now; these tests also show that the validator does catch what it must.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from ansible_collections.hastack.ha.plugins.filter.k8s import k8s_schema_problems

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "k8s" / "rendered"
# EKS standard support at the time of writing; each must be shipped by the
# installed kubernetes-validate (checked below, no network).
VERSIONS = ("1.33.0", "1.34.0", "1.35.0")
FILES = sorted(FIXTURES.glob("*/*.yml"))


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_matrix_is_shipped_offline() -> None:
    shipped = set(kubernetes_validate.utils.all_versions())
    assert set(VERSIONS) <= shipped, f"kubernetes-validate {kubernetes_validate.__version__} ships {sorted(shipped)}"


def test_every_role_is_covered() -> None:
    assert {p.parent.name for p in FILES} == {
        "patroni_postgres",
        "redis_sentinel",
        "prometheus_alertmanager",
        "app_backend",
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_objects_are_valid(version: str) -> None:
    errors = []
    for path in FILES:
        try:
            kubernetes_validate.validate(load(path), version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{path.parent.name}/{path.name}: {error.message}")
    assert errors == []


def statefulset() -> dict[str, Any]:
    return copy.deepcopy(load(FIXTURES / "patroni_postgres" / "50-statefulset.yml"))


def test_unknown_field_fails_strict_validation() -> None:
    obj = statefulset()
    obj["spec"]["template"]["spec"]["topologySpreadConstraint"] = []  # typo: the s is missing
    kubernetes_validate.validate(obj, VERSIONS[0], strict=False)  # lenient: unknown fields pass
    with pytest.raises(kubernetes_validate.ValidationError, match="topologySpreadConstraint"):
        kubernetes_validate.validate(obj, VERSIONS[0], strict=True)


def test_wrong_type_fails() -> None:
    obj = statefulset()
    obj["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError, match="three"):
        kubernetes_validate.validate(obj, VERSIONS[0], strict=True)


def test_misplaced_probe_field_fails() -> None:
    obj = statefulset()
    obj["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["path"] = "/readiness"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, VERSIONS[-1], strict=True)


# --- the filter the role ha_k8s runs before it writes anything -------------


def test_schema_filter_passes_the_rendered_objects() -> None:
    objects = {p.name: load(p) for p in FILES}
    for version in VERSIONS:
        assert k8s_schema_problems(objects, version) == []


def test_schema_filter_names_object_path_and_error() -> None:
    obj = statefulset()
    obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = ["500m"]
    problems = k8s_schema_problems({"50-statefulset.yml": obj}, "1.33")
    assert len(problems) == 1
    assert problems[0].startswith("50-statefulset.yml: spec/template/spec/containers/0/resources/requests/cpu: ")


def test_schema_filter_unknown_field_and_kind() -> None:
    obj = statefulset()
    obj["spec"]["podManagementPolicyy"] = "OrderedReady"
    assert len(k8s_schema_problems([obj], "1.35")) == 1
    assert k8s_schema_problems([obj], "1.35", strict=False) == []
    assert k8s_schema_problems([{"apiVersion": "v1", "kind": "Nope", "metadata": {"name": "x"}}], "1.33") == [
        "Nope/x: no schema for Nope v1 in Kubernetes 1.33"
    ]

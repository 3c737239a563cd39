"""hastack.ha.k8s_disrupt: the Kubernetes drill disruptions against a fake API server.

The fake holds k8s_info-shaped objects (fixtures/k8s/live/healthy.json: 3
zones x 2 nodes, the Patroni pods with Patroni's role labels, plus an
aws-node DaemonSet pod and a static pod on the primary's node) and answers
the requests as the API server does: DELETE with a uid precondition, PATCH of
a node, GET of pods by field and label selector, and POST of an Eviction that
a PodDisruptionBudget may refuse with HTTP 429. The zone kill runs on
test_k8s_drill.zone_cluster() (Redis, Sentinel, app, DaemonSet, static,
terminating and evicted pods over 3 zones). The module's client over the
``kubernetes`` package is tested against the same fake behind HTTP on
127.0.0.1; no cluster exists here.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.hastack.ha.plugins.module_utils import k8s_drill
from ansible_collections.hastack.ha.plugins.modules import k8s_disrupt
from test_k8s_drill import DAEMONS, SYSTEM_NODE, ZONE_A, daemon_pod, extra_pods, zone_cluster

LIVE = Path(__file__).resolve().parent / "fixtures" / "k8s" / "live"
PRIMARY_NODE = "ip-10-0-1-11.eu-west-1.compute.internal"
PDB_429 = {"kind": "Status", "reason": "TooManyRequests", "code": 429,
           "message": "Cannot evict pod as it would violate the pod's disruption budget."}  # fmt: skip


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def wall(self) -> float:
        return 1_795_000_000.0 + self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeApi:
    """The part of the API server the disruptions use."""

    def __init__(self, pdb_refusals: dict[str, int] | None = None, cluster: dict[str, Any] | None = None) -> None:
        if cluster is None:
            data = json.loads((LIVE / "healthy.json").read_text(encoding="utf-8"))
            cluster = {
                "nodes": data["nodes"]["resources"],
                "pods": data["pods"]["resources"] + extra_pods(PRIMARY_NODE),
            }
        self.nodes = {n["metadata"]["name"]: n for n in copy.deepcopy(cluster["nodes"])}
        self.pods = {p["metadata"]["name"]: p for p in copy.deepcopy(cluster["pods"])}
        # pod name -> how many evictions its PDB still refuses (a large number: always)
        self.pdb_refusals = dict(pdb_refusals or {})
        self.log: list[tuple[str, str]] = []
        self.deletes: list[tuple[str, dict[str, Any]]] = []  # (path, DeleteOptions)

    def request(self, method: str, path: str, body: Any = None, content_type: str | None = None,
                query: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:  # fmt: skip
        self.log.append((method, path))
        parts = path.strip("/").split("/")
        if method == "GET" and path == "/api/v1/nodes":
            return 200, {"kind": "NodeList", "items": list(self.nodes.values())}
        if method == "GET" and parts[-1] == "pods":
            return 200, {"kind": "PodList", "items": self._select(parts, query or {})}
        if method == "PATCH" and parts[:3] == ["api", "v1", "nodes"]:
            assert content_type == "application/strategic-merge-patch+json"
            self.nodes[parts[3]].setdefault("spec", {}).update(body["spec"])
            return 200, self.nodes[parts[3]]
        if method == "DELETE" and parts[-2] == "pods":
            self.deletes.append((path, body))
            pod = self.pods.get(parts[-1])
            if pod is None or pod["metadata"]["namespace"] != parts[3]:
                return 404, {"reason": "NotFound", "message": f'pods "{parts[-1]}" not found'}
            if body["preconditions"]["uid"] != pod["metadata"]["uid"]:
                return 409, {"reason": "Conflict", "message": "Precondition failed: UID in precondition"}
            assert body["gracePeriodSeconds"] == 0
            del self.pods[parts[-1]]
            return 200, pod
        if method == "POST" and parts[-1] == "eviction":
            name = parts[-2]
            if name not in self.pods or self.pods[name]["metadata"]["namespace"] != parts[3]:
                return 404, {"reason": "NotFound"}
            assert body["kind"] == "Eviction" and body["metadata"]["name"] == name
            if self.pdb_refusals.get(name, 0) > 0:
                self.pdb_refusals[name] -= 1
                return 429, PDB_429
            del self.pods[name]
            return 201, {"kind": "Status", "status": "Success"}
        raise AssertionError(f"unexpected request {method} {path}")

    def _select(self, parts: list[str], query: dict[str, str]) -> list[dict[str, Any]]:
        # the API server lists in key order: namespace, then name
        pods = sorted(self.pods.values(), key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))
        if len(parts) == 5:  # /api/v1/namespaces/<ns>/pods
            pods = [p for p in pods if p["metadata"]["namespace"] == parts[3]]
        if "fieldSelector" in query:
            key, value = query["fieldSelector"].split("=")
            assert key == "spec.nodeName"
            pods = [p for p in pods if p.get("spec", {}).get("nodeName") == value]
        for term in filter(None, query.get("labelSelector", "").split(",")):
            key, value = term.split("=")
            pods = [p for p in pods if p["metadata"].get("labels", {}).get(key) == value]
        return copy.deepcopy(pods)


def module(check_mode: bool = False, **params: Any) -> SimpleNamespace:
    defaults = {"action": "kill", "kubeconfig": "/dev/null", "context": "", "namespace": "hastack", "pod": "",
                "label_selector": "", "target_label": {}, "node": "", "nodes": [], "zone": "",
                "eviction_timeout_s": 120.0, "retry_interval_s": 5.0}  # fmt: skip
    return SimpleNamespace(params={**defaults, **params}, check_mode=check_mode)


def test_kill_deletes_the_primary_with_grace_zero() -> None:
    api, clock = FakeApi(), FakeClock()
    result = k8s_disrupt.run(
        module(label_selector="cluster-name=hastack", target_label={"role": "primary"}), api, clock
    )
    assert (result["pod"], result["node"], result["t_wall"]) == ("hastack-0", PRIMARY_NODE, clock.wall())
    assert "hastack-0" not in api.pods and "hastack-1" in api.pods
    assert api.log[-1] == ("DELETE", "/api/v1/namespaces/hastack/pods/hastack-0")


def test_kill_in_check_mode_sends_nothing() -> None:
    api = FakeApi()
    result = k8s_disrupt.run(module(check_mode=True, pod="hastack-2"), api, FakeClock())
    assert result["pod"] == "hastack-2" and [m for m, _ in api.log] == ["GET"]


def test_kill_of_a_replaced_pod_is_refused_by_the_uid_precondition() -> None:
    api = FakeApi()
    pod = copy.deepcopy(api.pods["hastack-1"])
    api.pods["hastack-1"]["metadata"]["uid"] = "a-successor-with-the-same-name"
    with pytest.raises(k8s_drill.K8sRequestError, match="HTTP 409 Precondition failed"):
        k8s_drill.kill(api, pod, FakeClock())
    assert "hastack-1" in api.pods


def test_kill_of_an_unknown_pod_names_the_pods_there_are() -> None:
    with pytest.raises(k8s_drill.DrillTargetError, match="no live pod named 'hastack-9'; pods: "):
        k8s_disrupt.run(module(pod="hastack-9"), FakeApi(), FakeClock())


def test_drain_of_the_primarys_node_cordons_and_evicts_only_what_drain_evicts() -> None:
    api = FakeApi()
    result = k8s_disrupt.run(module(action="drain", pod="hastack-0"), api, FakeClock())
    assert result["nodes"] == result["cordoned"] == [PRIMARY_NODE]
    assert api.nodes[PRIMARY_NODE]["spec"]["unschedulable"] is True
    assert result["evicted"] == ["hastack/hastack-0"] and result["blocked"] == []
    assert result["skipped"] == [
        ["kube-system/aws-node-7k2xq", "DaemonSet pod"],
        [f"kube-system/node-probe-{PRIMARY_NODE}", "mirror (static) pod"],
    ]
    # cordon first, then the eviction
    assert [m for m, _ in api.log].index("PATCH") < [m for m, _ in api.log].index("POST")
    assert "aws-node-7k2xq" in api.pods and "failed" not in result


def test_drain_waits_out_a_pdb_that_refuses_twice() -> None:
    api, clock = FakeApi(pdb_refusals={"hastack-0": 2}), FakeClock()
    result = k8s_disrupt.run(module(action="drain", node=PRIMARY_NODE, retry_interval_s=5.0), api, clock)
    assert result["evicted"] == ["hastack/hastack-0"] and result["retries"] == 2
    assert result["duration_s"] == 10.0 and "failed" not in result


def test_drain_blocked_by_a_pdb_fails_and_leaves_the_node_cordoned() -> None:
    api = FakeApi(pdb_refusals={"hastack-0": 10**6})
    result = k8s_disrupt.run(module(action="drain", node=PRIMARY_NODE, eviction_timeout_s=30.0), api, FakeClock())
    assert result["failed"] is True and result["blocked"] == ["hastack/hastack-0"]
    # attempts at 0, 5, ..., 30 s: six retries, never past the timeout
    assert result["duration_s"] == 30.0 and result["retries"] == 6
    assert "still allows no disruption (HTTP 429)" in result["msg"] and PRIMARY_NODE in result["msg"]
    assert api.nodes[PRIMARY_NODE]["spec"]["unschedulable"] is True and "hastack-0" in api.pods
    healed = k8s_disrupt.run(module(action="uncordon", nodes=result["cordoned"]), api, FakeClock())
    assert healed["cordoned"] == [PRIMARY_NODE] and api.nodes[PRIMARY_NODE]["spec"]["unschedulable"] is False


def test_drain_of_a_zone_drains_both_of_its_nodes() -> None:
    api = FakeApi()
    result = k8s_disrupt.run(module(action="drain", zone="eu-west-1b"), api, FakeClock())
    assert result["nodes"] == ["ip-10-0-2-11.eu-west-1.compute.internal", "ip-10-0-2-12.eu-west-1.compute.internal"]
    assert result["evicted"] == ["hastack/hastack-1"]
    assert all(api.nodes[n]["spec"]["unschedulable"] for n in result["nodes"])


def test_an_eviction_error_other_than_429_stops_the_drain_and_names_the_cordoned_nodes() -> None:
    class TwoPdbs(FakeApi):
        def request(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, dict[str, Any]]:
            if method == "POST":
                return 500, {"message": "This pod has more than one PodDisruptionBudget"}
            return super().request(method, path, body, **kw)

    api = TwoPdbs()
    with pytest.raises(
        k8s_drill.K8sRequestError, match="evicting hastack/hastack-0: error: HTTP 500 This pod has"
    ) as error:
        k8s_disrupt.run(module(action="drain", zone="eu-west-1a"), api, FakeClock())
    # both nodes of the zone were cordoned before the eviction: the error names them for the heal
    zone_a = [PRIMARY_NODE, "ip-10-0-1-12.eu-west-1.compute.internal"]
    assert error.value.cordoned == zone_a and str(error.value).endswith(
        f"; {', '.join(zone_a)} stay cordoned (the drill's heal uncordons them)"
    )
    assert all(api.nodes[n]["spec"]["unschedulable"] for n in zone_a)


@pytest.mark.parametrize(
    "targets",
    [{"node": PRIMARY_NODE, "zone": "eu-west-1a"}, {"pod": "hastack-0", "target_label": {"role": "primary"}}, {}],
)
def test_drain_needs_exactly_one_target(targets: dict[str, Any]) -> None:
    api = FakeApi()
    expected = "drain needs exactly one of node, zone, pod, target_label; got " + (
        ", ".join(f"{k}={v!r}" for k, v in targets.items()) or "none"
    )
    with pytest.raises(k8s_drill.DrillTargetError, match=f"^{re.escape(expected)}$"):
        k8s_disrupt.run(module(action="drain", **targets), api, FakeClock())
    assert api.log == []


def test_drain_of_an_unknown_zone_names_the_zones_there_are_and_cordons_nothing() -> None:
    api = FakeApi()
    with pytest.raises(k8s_drill.DrillTargetError, match=r"no node in zone 'eu-west-1d' \(label topology"):
        k8s_disrupt.run(module(action="drain", zone="eu-west-1d"), api, FakeClock())
    assert [m for m, _ in api.log] == ["GET"]


# --- kill of a zone: every pod of the namespace on the zone's nodes ----------

ZONE_A_HASTACK = ["hastack/hastack-0", "hastack/hastack-app-7c9f8d6b5d-4xk2p", "hastack/hastack-redis-0",
                  "hastack/hastack-sentinel-0"]  # fmt: skip


def zone_api() -> FakeApi:
    return FakeApi(cluster=zone_cluster())


def test_kill_of_a_zone_deletes_every_pod_there_with_grace_zero_and_its_uid() -> None:
    api, clock = zone_api(), FakeClock()
    listed = {p["metadata"]["name"]: p["metadata"]["uid"] for p in api.pods.values()}
    result = k8s_disrupt.run(module(zone="eu-west-1a"), api, clock)
    assert result["pods"] == ZONE_A_HASTACK and result["gone"] == result["errors"] == []
    # the node of the multi-zone node group is in the zone too (its app pod is killed)
    assert result["nodes"] == [*ZONE_A, SYSTEM_NODE] and result["zone"] == "eu-west-1a"
    assert result["skipped"] == [
        ["hastack/hastack-app-5b8d7c6f4e-h2j7k", "already terminating"],
        ["hastack/hastack-app-7c9f8d6b5d-zz9k1", "finished"],
    ]
    assert api.deletes == [
        (
            f"/api/v1/namespaces/{name.replace('/', '/pods/')}",
            {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": listed[name.split("/")[1]]},
            },
        )
        for name in ZONE_A_HASTACK
    ]
    # the other zones' pods are untouched; the deletes went back to back, t_wall at the first
    assert {"hastack-1", "hastack-2", "hastack-redis-1", "hastack-sentinel-2", "hastack-app-7c9f8d6b5d-m8r5t"} <= set(
        api.pods
    )
    assert [m for m, _ in api.log] == ["GET", "GET"] + ["DELETE"] * 4
    assert result["t_wall"] == clock.wall() and result["duration_s"] == 0.0 and "failed" not in result


def test_kill_of_a_zone_leaves_daemonset_and_mirror_pods_alone() -> None:
    api = zone_api()
    result = k8s_disrupt.run(module(zone="eu-west-1a", namespace="kube-system"), api, FakeClock())
    assert result["pods"] == ["kube-system/coredns-5b9dd8f4c7-7wq2n"]
    daemons = {f"kube-system/{daemon_pod(ns, name, {}, node)['metadata']['name']}"
               for node in result["nodes"] for ns, name in DAEMONS if ns == "kube-system"}  # fmt: skip
    assert {name for name, why in result["skipped"] if why == "DaemonSet pod"} == daemons and len(daemons) == 6
    assert [f"kube-system/node-probe-{ZONE_A[0]}", "mirror (static) pod"] in result["skipped"]
    assert len(result["skipped"]) == 7 and all(n.split("/")[1] in api.pods for n, _ in result["skipped"])


def test_kill_of_a_zone_with_nothing_to_kill_fails_naming_what_it_left_alone() -> None:
    api = zone_api()
    with pytest.raises(k8s_drill.DrillTargetError) as error:
        k8s_disrupt.run(module(zone="eu-west-1b", namespace="hastack-node-exporter"), api, FakeClock())
    assert str(error.value).startswith(
        "no pod to kill in namespace hastack-node-exporter on the nodes of zone eu-west-1b "
        "(ip-10-0-2-11.eu-west-1.compute.internal, ip-10-0-2-12.eu-west-1.compute.internal); left alone: "
        "hastack-node-exporter/hastack-node-exporter-"
    )
    assert str(error.value).count("(DaemonSet pod)") == 2 and api.deletes == []


def test_kill_of_a_zone_by_label_selector_kills_only_the_selected_pods() -> None:
    api = zone_api()
    result = k8s_disrupt.run(module(zone="eu-west-1a", label_selector="app.kubernetes.io/name=redis"), api, FakeClock())
    assert result["pods"] == ["hastack/hastack-redis-0"] and result["skipped"] == []
    assert [p for p, _ in api.deletes] == ["/api/v1/namespaces/hastack/pods/hastack-redis-0"]


def test_kill_of_a_zone_in_check_mode_sends_nothing() -> None:
    api = zone_api()
    result = k8s_disrupt.run(module(check_mode=True, zone="eu-west-1a"), api, FakeClock())
    assert result["pods"] == ZONE_A_HASTACK and result["nodes"] == [*ZONE_A, SYSTEM_NODE]
    assert result["t_wall"] is None and len(result["skipped"]) == 2
    assert [m for m, _ in api.log] == ["GET", "GET"] and api.deletes == []


def test_kill_of_an_unknown_zone_names_the_zones_there_are_and_deletes_nothing() -> None:
    api = zone_api()
    expected = "no node in zone 'eu-west-1d' (label topology.kubernetes.io/zone); zones with nodes: " + (
        "eu-west-1a, eu-west-1b, eu-west-1c"
    )
    with pytest.raises(k8s_drill.DrillTargetError, match=f"^{re.escape(expected)}$"):
        k8s_disrupt.run(module(zone="eu-west-1d"), api, FakeClock())
    assert api.deletes == []


def test_kill_of_a_zone_sends_every_delete_and_reports_the_refused_ones() -> None:
    class Refusing(FakeApi):
        def request(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, dict[str, Any]]:
            if method == "GET" and path.endswith("/pods"):
                listed = super().request(method, path, body, **kw)
                # after the listing: redis-0 replaced by a successor, sentinel-0 already deleted
                self.pods["hastack-redis-0"]["metadata"]["uid"] = "a-successor-with-the-same-name"
                del self.pods["hastack-sentinel-0"]
                return listed
            if method == "DELETE" and path.endswith("/hastack-0"):
                self.deletes.append((path, body))
                return 500, {"message": "etcdserver: request timed out"}
            return super().request(method, path, body, **kw)

    api = Refusing(cluster=zone_cluster())
    result = k8s_disrupt.run(module(zone="eu-west-1a"), api, FakeClock())
    assert len(api.deletes) == 4 and result["pods"] == ["hastack/hastack-app-7c9f8d6b5d-4xk2p"]
    assert result["gone"] == ["hastack/hastack-redis-0", "hastack/hastack-sentinel-0"]
    assert result["errors"] == ["hastack/hastack-0: HTTP 500 etcdserver: request timed out"]
    assert result["failed"] is True and result["msg"] == (
        "kill of zone eu-west-1a: the API server refused 1 of 4 deletes "
        "(hastack/hastack-0: HTTP 500 etcdserver: request timed out); the other pods were deleted."
    )
    assert "hastack-redis-0" in api.pods  # the successor is not killed


@pytest.mark.parametrize(
    "targets",
    [
        {"pod": "hastack-0", "zone": "eu-west-1a"},
        {"target_label": {"role": "primary"}, "zone": "eu-west-1a"},
        {"pod": "hastack-0", "target_label": {"role": "primary"}},
        {},
        {"node": PRIMARY_NODE},
    ],
)
def test_kill_needs_exactly_one_of_pod_target_label_or_zone(targets: dict[str, Any]) -> None:
    api = zone_api()
    given = ", ".join(f"{k}={v!r}" for k, v in targets.items() if k != "node") or "none"
    expected = f"kill needs exactly one of pod, target_label, zone; got {given}"
    with pytest.raises(k8s_drill.DrillTargetError, match=f"^{re.escape(expected)}$"):
        k8s_disrupt.run(module(**targets), api, FakeClock())
    assert api.log == []


def test_a_missing_kubeconfig_fails_naming_the_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    kubeconfig = tmp_path / "no-such-kubeconfig"
    args = {"action": "kill", "kubeconfig": str(kubeconfig), "zone": "eu-west-1a"}
    with patch_module_args(args), pytest.raises(SystemExit):
        k8s_disrupt.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] is True
    assert result["msg"].startswith(f"kubeconfig {kubeconfig} (context its current one): Invalid kube-config file.")


# --- the module's client over the kubernetes package, against the fake on 127.0.0.1

TOKEN = "drill-test-token"


def kubeconfig_for(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "drill", "user": {"token": TOKEN}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "drill"}}],
                "current-context": "fake",
            }
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, FakeApi, list[dict[str, str]]]]:
    """The fake API server (zone_cluster, hastack-redis-0's PDB refusing) over HTTP; its kubeconfig."""
    api, headers = FakeApi(pdb_refusals={"hastack-redis-0": 10**6}, cluster=zone_cluster()), []

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            headers.append({k.lower(): v for k, v in self.headers.items()})
            status, out = api.request(self.command, url.path, body, self.headers.get("Content-Type"),
                                      dict(parse_qsl(url.query)))  # fmt: skip
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield kubeconfig_for(tmp_path, f"http://127.0.0.1:{httpd.server_address[1]}"), api, headers
    httpd.shutdown()
    httpd.server_close()


def test_the_client_sends_a_zone_kill_through_the_kubernetes_package(
    capsys: pytest.CaptureFixture[str], served: tuple[Path, FakeApi, list[dict[str, str]]]
) -> None:
    kubeconfig, api, headers = served
    with (
        patch_module_args({"action": "kill", "kubeconfig": str(kubeconfig), "zone": "eu-west-1a"}),
        pytest.raises(SystemExit),
    ):
        k8s_disrupt.main()
    result = json.loads(capsys.readouterr().out)
    assert "failed" not in result and result["pods"] == ZONE_A_HASTACK
    assert [body["gracePeriodSeconds"] for _, body in api.deletes] == [0] * 4
    assert {h.get("authorization") for h in headers} == {f"Bearer {TOKEN}"}


def test_the_client_returns_refusals_as_statuses(served: tuple[Path, FakeApi, list[dict[str, str]]]) -> None:
    kubeconfig, api, headers = served
    client = k8s_disrupt.KubernetesApi(str(kubeconfig), "")
    eviction = k8s_drill.eviction_request(api.pods["hastack-redis-0"])
    assert client.request(eviction["method"], eviction["path"], body=eviction["body"]) == (429, PDB_429)
    status, body = client.request("DELETE", "/api/v1/namespaces/hastack/pods/hastack-9", body={"preconditions": {}})
    assert (status, body["reason"]) == (404, "NotFound")
    status, body = client.request("GET", "/api/v1/pods", query={"fieldSelector": f"spec.nodeName={SYSTEM_NODE}"})
    assert status == 200 and {p["spec"]["nodeName"] for p in body["items"]} == {SYSTEM_NODE}
    cordon = k8s_drill.cordon_request(api.nodes[SYSTEM_NODE])
    assert client.request(cordon["method"], cordon["path"], cordon["body"], cordon["content_type"])[0] == 200
    assert headers[-1]["content-type"] == "application/strategic-merge-patch+json"


def test_the_client_reports_no_answer_as_status_0(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        kubeconfig = kubeconfig_for(tmp_path, f"http://127.0.0.1:{sock.getsockname()[1]}")
    status, body = k8s_disrupt.KubernetesApi(str(kubeconfig), "", timeout_s=2.0).request("GET", "/api/v1/nodes")
    assert status == 0 and body["message"].startswith("no answer from the API server within 2.0 s:")

"""The alert rules and the Alertmanager routes, checked with Prometheus' own tools.

The role's templates are rendered with the role's defaults (the same Jinja
delimiters the role uses), then:

- ``promtool check rules`` and ``promtool test rules`` over tests/unit/promtool/;
- every alert has a promtool case where it must not fire yet, one where it
  fires with its exact labels and annotations, and one after recovery where
  it no longer fires (the Watchdog always fires, so it only has the middle one);
- every alert has severity, team, summary, description and a runbook_url
  whose anchor is a section of docs/runbooks.md;
- ``amtool check-config`` on alertmanager.yml with and without secrets, and
  ``amtool config routes test`` for each severity/team combination;
- every inhibit rule compares only labels that both sides require non-empty.

The Makefile's ``unit`` target installs prometheus and prometheus-alertmanager
(promtool, amtool).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from monitoring_templates import render_alertmanager, render_prometheus, render_rules, role_defaults

REPO = Path(__file__).resolve().parents[2]
PROMTOOL_TESTS = sorted((Path(__file__).parent / "promtool").glob("*_test.yml"))
RUNBOOKS = REPO / "docs" / "runbooks.md"

SEVERITIES = {"critical", "warning", "none"}
TEAMS = {"database", "infra", "app"}
# Alerts that cannot have a "not firing" / "resolved" case, and why.
ALWAYS_FIRING = {"Watchdog": "vector(1): the dead man's switch fires by design"}

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None or shutil.which("amtool") is None,
    reason="promtool/amtool missing: `make unit` installs prometheus and prometheus-alertmanager",
)


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered rules beside copies of the promtool test files."""
    workdir = tmp_path_factory.mktemp("rules")
    (workdir / "hastack.rules.yml").write_text(render_rules())
    for test_file in PROMTOOL_TESTS:
        shutil.copy(test_file, workdir / test_file.name)
    return workdir


@pytest.fixture(scope="module")
def rules(rules_dir: Path) -> list[dict[str, Any]]:
    groups = yaml.safe_load((rules_dir / "hastack.rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


@pytest.fixture(scope="module")
def alerts(rules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules if "alert" in rule}


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", str(text))
    assert parts, f"not a duration: {text!r}"
    return sum(int(n) * units[u] for n, u in parts)


# --- Prometheus' own checks ---------------------------------------------------


def test_promtool_check_rules(rules_dir: Path) -> None:
    result = run("promtool", "check", "rules", "hastack.rules.yml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(rules_dir: Path, test_file: Path) -> None:
    result = run("promtool", "test", "rules", test_file.name, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_slo_from_the_apps_own_counters(tmp_path: Path) -> None:
    """prometheus_alertmanager_slo_source app (Kubernetes): the same alerts from the app's counters."""
    (tmp_path / "hastack.rules.yml").write_text(render_rules(prometheus_alertmanager_slo_source="app"))
    test_file = Path(__file__).parent / "promtool" / "slo_source_app" / "app_slo_test.yml"
    shutil.copy(test_file, tmp_path / test_file.name)
    result = run("promtool", "check", "rules", "hastack.rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    result = run("promtool", "test", "rules", test_file.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "haproxy" not in (tmp_path / "hastack.rules.yml").read_text()


@pytest.mark.parametrize(("platform", "source"), [("hosts", "lb"), ("kubernetes", "app")])
def test_slo_source_follows_the_platform(platform: str, source: str) -> None:
    """Kubernetes has no load balancer metrics (a ClusterIP Service): the app's counters there."""
    default = yaml.safe_load((REPO / "roles" / "prometheus_alertmanager" / "defaults" / "main.yml").read_text())[
        "prometheus_alertmanager_slo_source"
    ]
    rendered = jinja2.Environment().from_string(default).render(prometheus_alertmanager_platform=platform)
    assert rendered == source


def test_haproxy_is_scraped_from_the_lb_group(rules_dir: Path) -> None:
    """Job haproxy: HAProxy's exporter on the stats port of every host of the lb group."""
    hostvars = {"mon": {"ha_address": "127.0.0.20"}, "lb-1": {"ha_address": "127.0.0.30"}}
    groups = {"all": ["mon", "lb-1"], "monitoring": ["mon"], "lb": ["lb-1"]}
    path = rules_dir / "prometheus-lb.yml"
    path.write_text(
        render_prometheus(groups, hostvars, _prometheus_alertmanager_rules_file=str(rules_dir / "hastack.rules.yml"))
    )
    result = run("promtool", "check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"]: job for job in yaml.safe_load(path.read_text())["scrape_configs"]}
    assert jobs["haproxy"]["static_configs"] == [{"targets": ["127.0.0.30:8404"], "labels": {"node": "lb-1"}}]
    assert "metrics_path" not in jobs["haproxy"]  # /metrics, as haproxy.cfg serves it


@pytest.mark.parametrize("platform", ["hosts", "kubernetes"])
def test_promtool_check_config_on_both_platforms(rules_dir: Path, platform: str) -> None:
    """prometheus.yml from the one template: static targets from the inventory, or pod discovery."""
    nodes = ["node-a", "node-b", "node-c"]
    hostvars = {h: {"ha_address": f"127.0.0.{11 + i}"} for i, h in enumerate(nodes)}
    hostvars["mon"] = {"ha_address": "127.0.0.20"}
    hostvars["node-b"]["patroni_postgres_restapi_port"] = 8009
    groups = {"all": [*nodes, "mon"], "monitoring": ["mon"], "postgres_cluster": nodes, "etcd_cluster": nodes}
    path = rules_dir / f"prometheus-{platform}.yml"
    path.write_text(
        render_prometheus(
            groups,
            hostvars,
            prometheus_alertmanager_platform=platform,
            _prometheus_alertmanager_rules_file=str(rules_dir / "hastack.rules.yml"),
        )
    )
    result = run("promtool", "check", "config", str(path))
    jobs = {job["job_name"]: job for job in yaml.safe_load(path.read_text())["scrape_configs"]}
    if platform == "kubernetes":
        # Debian builds Prometheus without Kubernetes discovery: its promtool
        # rejects the field itself. Anything else wrong would be reported first.
        assert result.returncode == 0 or "field kubernetes_sd_configs not found" in result.stdout + result.stderr, (
            result.stdout + result.stderr
        )
        # kube-state-metrics in a job of its own (it honours the labels of its
        # series); the exporter sidecars in the jobs of the same names as on hosts
        # (pgbackrest: what node_exporter's textfile collector holds on hosts)
        assert list(jobs) == ["kubernetes-pods", "kube-state-metrics", "postgres", "pgbackrest", "redis", "sentinel"]
        assert [j["kubernetes_sd_configs"] for j in jobs.values()] == [[{"role": "pod"}]] * 6
        assert [j.get("honor_labels", False) for j in jobs.values()] == [False, True, False, False, False, False]
        return
    assert result.returncode == 0, result.stdout + result.stderr
    # no redis_cluster, app or lb group in this inventory: those jobs are left out
    assert set(jobs) == {"prometheus", "alertmanager", "node", "postgres", "patroni", "etcd"}
    patroni = [(c["targets"][0], c["labels"]["node"]) for c in jobs["patroni"]["static_configs"]]
    assert patroni == [("127.0.0.11:8008", "node-a"), ("127.0.0.12:8009", "node-b"), ("127.0.0.13:8008", "node-c")]
    assert len(jobs["node"]["static_configs"]) == 4


# --- every alert is tested ----------------------------------------------------


def promtool_cases() -> dict[str, list[dict[str, Any]]]:
    """Per alert, its cases: (test name, eval seconds, firing?) in time order."""
    cases: dict[str, list[dict[str, Any]]] = {}
    for test_file in PROMTOOL_TESTS:
        for test in yaml.safe_load(test_file.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(
                    {
                        "test": f"{test_file.name}: {test['name']}",
                        "t": duration_s(case["eval_time"]),
                        "firing": bool(case.get("exp_alerts")),
                        "exp_alerts": case.get("exp_alerts") or [],
                    }
                )
    return cases


def test_every_alert_has_quiet_firing_and_resolved_cases(alerts: dict[str, dict[str, Any]]) -> None:
    cases = promtool_cases()
    problems = []
    for name in sorted(alerts):
        own = cases.get(name, [])
        if not own:
            problems.append(f"{name}: no promtool test case at all")
            continue
        by_test: dict[str, list[dict[str, Any]]] = {}
        for case in own:
            by_test.setdefault(case["test"], []).append(case)
        complete = False
        for test_cases in by_test.values():
            firing = [c["t"] for c in test_cases if c["firing"]]
            quiet = [c["t"] for c in test_cases if not c["firing"]]
            if not firing:
                continue
            if name in ALWAYS_FIRING or (any(t < min(firing) for t in quiet) and any(t > min(firing) for t in quiet)):
                complete = True
        if not complete:
            problems.append(
                f"{name}: needs one promtool test with a quiet case before a firing case "
                "(below threshold or before 'for') and a quiet case after it (resolved)"
            )
    unknown = sorted(set(cases) - set(alerts))
    if unknown:
        problems.append(f"promtool tests name alerts the rules do not have: {unknown}")
    assert not problems, "\n".join(problems)


def test_firing_cases_spell_out_labels_and_annotations(alerts: dict[str, dict[str, Any]]) -> None:
    problems = []
    for name, own in promtool_cases().items():
        for case in own:
            for exp in case["exp_alerts"]:
                labels = exp.get("exp_labels") or {}
                annotations = exp.get("exp_annotations") or {}
                for key in ("severity", "team"):
                    if labels.get(key) != alerts.get(name, {}).get("labels", {}).get(key):
                        problems.append(f"{case['test']}: {name} exp_labels.{key} missing or wrong")
                for key in ("summary", "description", "runbook_url"):
                    if key not in annotations:
                        problems.append(f"{case['test']}: {name} exp_annotations.{key} missing")
    assert not problems, "\n".join(problems)


# --- every alert is well-formed ---------------------------------------------------


def runbook_anchors() -> set[str]:
    """GitHub's anchors of the Markdown headings of docs/runbooks.md."""
    anchors = set()
    for line in RUNBOOKS.read_text().splitlines():
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if match:
            title = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(title.replace(" ", "-"))
    return anchors


def test_every_alert_has_severity_team_and_annotations(alerts: dict[str, dict[str, Any]]) -> None:
    anchors = runbook_anchors()
    base = role_defaults()["prometheus_alertmanager_runbook_url"]
    problems = []
    for name, rule in sorted(alerts.items()):
        labels = rule.get("labels", {})
        annotations = rule.get("annotations", {})
        if labels.get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity {labels.get('severity')!r} not in {sorted(SEVERITIES)}")
        if labels.get("team") not in TEAMS:
            problems.append(f"{name}: team {labels.get('team')!r} not in {sorted(TEAMS)}")
        for key in ("summary", "description", "runbook_url"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{name}: no {key} annotation")
        url = str(annotations.get("runbook_url", ""))
        anchor = url.partition("#")[2]
        if not url.startswith(base + "#") or anchor not in anchors:
            problems.append(f"{name}: runbook_url {url!r} is not a section of docs/runbooks.md")
    assert not problems, "\n".join(problems)


def test_the_issue_names_every_seed_alert(alerts: dict[str, dict[str, Any]]) -> None:
    seed = {
        "NodeDown": ("2m", "critical"),
        "PodCrashLooping": (None, None),
        "HighLatency": ("5m", None),
        "VeryHighLatency": ("2m", "critical"),
        "DatabaseDown": ("1m", "critical"),
        "DatabaseReplicationLag": (None, None),
        "RedisDown": ("1m", "critical"),
        "RedisMasterMissing": (None, "critical"),
        "HighCPUUsage": ("10m", None),
        "HighMemoryUsage": ("10m", None),
        "DiskSpaceLow": (None, None),
        "HighErrorRate": (None, None),
        "DeploymentReplicasMismatch": (None, None),
        "NodeNotReady": ("5m", None),
        "PodNotReady": ("10m", None),
    }
    problems = []
    for name, (hold, severity) in seed.items():
        rule = alerts.get(name)
        if rule is None:
            problems.append(f"{name}: missing")
            continue
        if hold and rule.get("for") != hold:
            problems.append(f"{name}: for {rule.get('for')!r}, the issue says {hold}")
        if severity and rule["labels"]["severity"] != severity:
            problems.append(f"{name}: severity {rule['labels']['severity']}, the issue says {severity}")
    assert not problems, "\n".join(problems)


def test_kubernetes_alerts_use_kube_state_metrics_names(alerts: dict[str, dict[str, Any]]) -> None:
    for name in ("PodCrashLooping", "PodNotReady", "DeploymentReplicasMismatch", "NodeNotReady"):
        assert re.search(r"\bkube_[a-z_]+", alerts[name]["expr"]), name


def test_slo_alerts_use_both_windows_of_each_burn_rate(rules: list[dict[str, Any]]) -> None:
    recorded = {rule["record"] for rule in rules if "record" in rule}
    windows = {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}
    assert {f"job:slo_errors_per_request:ratio_rate{w}" for w in windows} <= recorded
    alerts = {rule["alert"]: rule["expr"] for rule in rules if "alert" in rule}
    fast, slow = alerts["ErrorBudgetBurnFast"], alerts["ErrorBudgetBurnSlow"]
    for factor, long, short in (("14.4", "1h", "5m"), ("6", "6h", "30m")):
        assert re.search(rf"ratio_rate{long} > \({factor} \* 0\.001\)\s+and [^ ]+ratio_rate{short} > \({factor}", fast)
    for factor, long, short in (("3", "1d", "2h"), ("1", "3d", "6h")):
        assert re.search(rf"ratio_rate{long} > \({factor} \* 0\.001\)\s+and [^ ]+ratio_rate{short} > \({factor}", slow)


# --- Alertmanager -------------------------------------------------------------------


@pytest.fixture(scope="module")
def am_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alertmanager.yml as the lab runs it, plus Slack and PagerDuty secret files."""
    workdir = tmp_path_factory.mktemp("alertmanager")
    path = workdir / "alertmanager.yml"
    path.write_text(
        render_alertmanager(
            prometheus_alertmanager_lab_receiver=True,
            prometheus_alertmanager_slack_api_url_file=str(workdir / "slack_api_url"),
            prometheus_alertmanager_pagerduty_routing_key_file=str(workdir / "pagerduty_routing_key"),
        )
    )
    return path


def test_amtool_check_config_with_every_integration(am_config: Path) -> None:
    result = run("amtool", "check-config", str(am_config))
    assert result.returncode == 0, result.stdout + result.stderr
    receivers = {r["name"]: r for r in yaml.safe_load(am_config.read_text())["receivers"]}
    assert "pagerduty_configs" in receivers["critical"] and "slack_configs" in receivers["critical"]
    assert receivers["critical"]["slack_configs"][0]["channel"] == "#critical-alerts"
    assert receivers["database"]["slack_configs"][0]["channel"] == "#database-alerts"
    assert receivers["infra"]["slack_configs"][0]["channel"] == "#infra-alerts"
    assert receivers["default"]["slack_configs"][0]["channel"] == "#alerts"


def test_receivers_without_secrets_are_left_out_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(render_alertmanager())
    result = run("amtool", "check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    assert "slack_api_url_file" not in (config.get("global") or {})
    for receiver in config["receivers"]:
        assert set(receiver) == {"name"}, f"{receiver['name']} has integrations without a secret: {receiver}"
    assert "lab" not in {r["name"] for r in config["receivers"]}


ROUTES = [
    # labels -> receivers, in order (the lab receiver first: it gets everything)
    ({"alertname": "DatabaseDown", "severity": "critical", "team": "database"}, ["lab", "critical", "database"]),
    ({"alertname": "DatabaseReplicationLag", "severity": "warning", "team": "database"}, ["lab", "database"]),
    ({"alertname": "NodeDown", "severity": "critical", "team": "infra"}, ["lab", "critical", "infra"]),
    ({"alertname": "HighCPUUsage", "severity": "warning", "team": "infra"}, ["lab", "infra"]),
    ({"alertname": "VeryHighLatency", "severity": "critical", "team": "app"}, ["lab", "critical"]),
    ({"alertname": "HighLatency", "severity": "warning", "team": "app"}, ["lab", "default"]),
    ({"alertname": "SomethingNew", "severity": "warning"}, ["lab", "default"]),
    ({"alertname": "SomethingNewAndBad", "severity": "critical"}, ["lab", "critical"]),
    ({"alertname": "Watchdog", "severity": "none", "team": "infra"}, ["lab", "watchdog"]),
]


@pytest.mark.parametrize(("labels", "receivers"), ROUTES, ids=lambda v: ",".join(v) if isinstance(v, list) else None)
def test_amtool_routes(am_config: Path, labels: dict[str, str], receivers: list[str]) -> None:
    argv = ["amtool", "config", "routes", "test", f"--config.file={am_config}"]
    argv += [f"--verify.receivers={','.join(receivers)}"]
    argv += [f"{k}={v}" for k, v in labels.items()]
    result = run(*argv)
    assert result.returncode == 0, f"{labels}: expected {receivers}, amtool says {result.stdout.strip()}"


def test_without_the_lab_receiver_routes_are_the_same_minus_lab(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(render_alertmanager())
    for labels, receivers in ROUTES:
        expected = [r for r in receivers if r != "lab"]
        argv = ["amtool", "config", "routes", "test", f"--config.file={path}"]
        argv += [f"--verify.receivers={','.join(expected)}", *[f"{k}={v}" for k, v in labels.items()]]
        result = run(*argv)
        assert result.returncode == 0, f"{labels}: expected {expected}, amtool says {result.stdout.strip()}"


def required_nonempty(matchers: list[str]) -> set[str]:
    """Labels a matcher list requires to be non-empty (name=~".+" or name="value")."""
    names = set()
    for matcher in matchers:
        match = re.fullmatch(r'\s*(\w+)\s*(=~|=)\s*"(.*)"\s*', matcher)
        if match and ((match.group(2) == "=" and match.group(3)) or match.group(3) in (".+", ".+?")):
            names.add(match.group(1))
    return names


def test_inhibit_rules_are_scoped(am_config: Path) -> None:
    rules = yaml.safe_load(am_config.read_text())["inhibit_rules"]
    assert rules
    for rule in rules:
        equal = set(rule["equal"])
        source = required_nonempty(rule["source_matchers"])
        target = required_nonempty(rule["target_matchers"])
        assert equal, rule
        assert equal <= source, f"{rule}: source side does not require {sorted(equal - source)} to be non-empty"
        assert equal <= target, f"{rule}: target side does not require {sorted(equal - target)} to be non-empty"


def test_critical_to_warning_inhibition_keeps_apart_what_differs(am_config: Path) -> None:
    critical_to_warning = yaml.safe_load(am_config.read_text())["inhibit_rules"][0]
    assert set(critical_to_warning["equal"]) == {"alertname", "instance"}
    assert 'severity="critical"' in critical_to_warning["source_matchers"]
    assert 'severity="warning"' in critical_to_warning["target_matchers"]


def test_every_target_label_the_inhibition_needs_is_on_the_alerts(alerts: dict[str, dict[str, Any]]) -> None:
    """NodeDown mutes by `node`: the alerts of what runs on a node keep the label."""
    per_node = ["DatabaseDown", "RedisDown", "ExporterDown", "HighCPUUsage", "HighMemoryUsage", "DiskSpaceLow"]
    for name, own in promtool_cases().items():
        if name not in per_node:
            continue
        for case in own:
            for exp in case["exp_alerts"]:
                assert "node" in exp["exp_labels"], f"{name} in {case['test']} has no node label"

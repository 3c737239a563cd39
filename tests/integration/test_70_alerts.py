"""Alerts delivered end to end on a real fault: a PostgreSQL member stops, the
lab receiver records DatabaseDown, and the resolution after the heal.

The member stopped is an asynchronous replica (role ``replica``), not the
primary: the path an alert takes (postgres_exporter -> Prometheus -> rule ->
Alertmanager -> receiver) is the same for any member, while stopping the
primary would add a failover to the test (already measured by the drills) and
stopping the synchronous standby would hold commits until Patroni names
another one. Patroni is stopped gracefully (``supervisorctl stop``), which
stops its PostgreSQL; postgres_exporter keeps running and reports ``pg_up 0``.

Bounds, from the deployed configs (the lab's: scrape and evaluation 15 s,
DatabaseDown ``for`` 1 m, group_wait 10 s, group_interval 15 s):

- fault -> notification <= for + 2 x scrape + group_wait (the issue's bound; one
  scrape interval until the exporter reports pg_up 0, and up to one
  evaluation interval, equal to the scrape interval here, until the rule sees it);
- heal -> resolved <= PostgreSQL start + scrape + evaluation + group_interval
  (Alertmanager sends a resolution at the group's next flush).

Costs about 2.5 minutes.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import record_timing, run_playbook, tail

pytestmark = pytest.mark.lab

SLACK_S = 5.0  # HTTP, process and file latencies on a loaded 2-core machine


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", duration))


def deployed_timing(lab: dict) -> dict[str, float]:
    """for / scrape / evaluation / group_wait / group_interval as deployed on the mon node."""
    config_dir = Path(f"/etc/hastack/{lab['name']}-mon")
    prometheus = yaml.safe_load((config_dir / "prometheus" / "prometheus.yml").read_text())
    alertmanager = yaml.safe_load((config_dir / "alertmanager" / "alertmanager.yml").read_text())
    rules = yaml.safe_load((config_dir / "prometheus" / "rules" / "hastack.rules.yml").read_text())
    rule = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "DatabaseDown")
    return {
        "for": seconds(rule["for"]),
        "scrape": seconds(prometheus["global"]["scrape_interval"]),
        "evaluation": seconds(prometheus["global"]["evaluation_interval"]),
        "group_wait": seconds(alertmanager["route"]["group_wait"]),
        "group_interval": seconds(alertmanager["route"]["group_interval"]),
    }


def records(path: Path, skip: int) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines[skip:]]


def find(path: Path, skip: int, node: str, status: str) -> dict[str, Any] | None:
    """The first recorded notification with DatabaseDown for node in that status."""
    for record in records(path, skip):
        for alert in record["notification"]["alerts"]:
            labels = alert["labels"]
            if labels.get("alertname") == "DatabaseDown" and labels.get("node") == node and alert["status"] == status:
                return {"record": record, "alert": alert}
    return None


def wait_for(what: str, probe, timeout: float, interval: float = 1.0):
    end = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def test_database_down_reaches_the_receiver_and_resolves(lab):
    name, net = lab["name"], lab["net"]
    prometheus = f"http://{net}.20:9090"
    notifications = Path(f"/var/lib/hastack/{name}-mon/alert-receiver/notifications.jsonl")
    timing = deployed_timing(lab)
    fire_bound = timing["for"] + 2 * timing["scrape"] + timing["group_wait"]

    cluster = get_json(f"http://{net}.11:8008/cluster")
    replicas = [m["name"] for m in cluster["members"] if m["role"] == "replica"]
    assert replicas, f"no asynchronous replica to stop: {cluster['members']}"
    node = replicas[0]
    octet = {"node-a": 11, "node-b": 12, "node-c": 13}[node]

    # Start from a quiet state: nothing left pending or firing from earlier tests.
    def quiet() -> bool:
        alerts = get_json(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
        return not any(a["labels"]["alertname"] == "DatabaseDown" for a in alerts)

    wait_for("no DatabaseDown pending or firing before the fault", quiet, timeout=240, interval=2)
    skip = len(records(notifications, 0))

    program = f"{name}-{node}-patroni"
    healed = False
    try:
        stop = subprocess.run(["supervisorctl", "stop", program], capture_output=True, text=True, check=False)
        t_fault = time.time()
        assert "stopped" in stop.stdout, stop.stdout + stop.stderr

        fired = wait_for(
            f"a DatabaseDown notification for {node}",
            lambda: find(notifications, skip, node, "firing"),
            timeout=fire_bound + 90,
        )
        fault_to_notification = fired["record"]["received_at"] - t_fault

        start = subprocess.run(["supervisorctl", "start", program], capture_output=True, text=True, check=False)
        t_heal = time.time()
        healed = True
        assert "started" in start.stdout, start.stdout + start.stderr

        def postgres_up() -> float | None:
            try:
                with urllib.request.urlopen(f"http://{net}.{octet}:8008/health", timeout=2) as response:
                    return time.time() if response.status == 200 else None
            except OSError:
                return None

        t_pg_up = wait_for(f"PostgreSQL on {node} running again", postgres_up, timeout=120, interval=0.5)
        resolved = wait_for(
            f"the DatabaseDown resolution for {node}",
            lambda: find(notifications, skip, node, "resolved"),
            timeout=180,
        )
        heal_to_resolved = resolved["record"]["received_at"] - t_heal
    finally:
        if not healed:
            subprocess.run(["supervisorctl", "start", program], capture_output=True, text=True, check=False)

    record_timing("alert_database_down_fault_to_notification_s", fault_to_notification)
    record_timing("alert_database_down_bound_s", fire_bound)
    record_timing("alert_database_down_heal_to_resolved_s", heal_to_resolved)
    record_timing("alert_database_down_pg_start_s", t_pg_up - t_heal)

    notification = fired["record"]["notification"]
    alert = fired["alert"]
    assert notification["receiver"] == "lab"
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["team"] == "database"
    assert alert["labels"]["job"] == "postgres" and alert["labels"]["instance"] == f"{net}.{octet}:9187"
    assert alert["annotations"]["summary"] == f"PostgreSQL on {node} is down"
    assert alert["annotations"]["runbook_url"].endswith("docs/runbooks.md#databasedown")

    # It must not come before `for` has passed, and not after the bound.
    assert fault_to_notification >= timing["for"], fault_to_notification
    assert fault_to_notification <= fire_bound + SLACK_S, (
        f"fault -> notification {fault_to_notification:.1f} s exceeds for + 2 x scrape + group_wait "
        f"= {fire_bound:.0f} s (+{SLACK_S:.0f} s slack)"
    )
    resolve_bound = (t_pg_up - t_heal) + timing["scrape"] + timing["evaluation"] + timing["group_interval"]
    assert heal_to_resolved <= resolve_bound + SLACK_S, (
        f"heal -> resolved {heal_to_resolved:.1f} s exceeds PostgreSQL start {t_pg_up - t_heal:.1f} s "
        f"+ scrape + evaluation + group_interval = {resolve_bound:.0f} s (+{SLACK_S:.0f} s slack)"
    )


def test_monitoring_is_healthy_again_after_the_heal(lab):
    """verify.yml (Patroni, Redis, Prometheus: every target up, nothing critical firing)."""
    run = run_playbook("playbooks/verify.yml")
    assert run.rc == 0, tail(run)
    assert "targets up" in run.output


def test_exporters_and_servers_bind_only_their_node_address(lab):
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    listening = {line.split()[3] for line in out.splitlines()}
    net = lab["net"]
    for octet in (11, 12, 13):
        for port in (9100, 9187, 9121, 9122):
            assert f"{net}.{octet}:{port}" in listening
    for port in (9090, 9093, 9095, 9100):
        assert f"{net}.20:{port}" in listening
    for port in (9090, 9093, 9094, 9095, 9100, 9187, 9121, 9122):
        assert f"0.0.0.0:{port}" not in listening and f"*:{port}" not in listening, port

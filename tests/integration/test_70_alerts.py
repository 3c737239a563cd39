"""Alerts delivered end to end on a real fault: a PostgreSQL member stops, the
lab receiver records DatabaseDown, and the resolution after the heal.

The member stopped is an asynchronous replica (role ``replica``), not the
primary: the path an alert takes (postgres_exporter -> Prometheus -> rule ->
Alertmanager -> receiver) is the same for any member, while stopping the
primary would add a failover to the test (already measured by the drills) and
stopping the synchronous standby would hold commits until Patroni names
another one. Patroni is stopped gracefully (``systemctl stop`` of its unit on
the member's machine, over SSH), which stops its PostgreSQL; postgres_exporter
keeps running and reports ``pg_up 0``.

Nothing here assumes a path or a unit name: each is read from the machine,
from the process that listens on the service's port (its unit, its
``--config.file``, the receiver's ``--output``). Bounds, from the configs
deployed on the ``mon`` machine (the lab's: scrape and evaluation 15 s,
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
import shlex
import time
import urllib.request
from typing import Any

import pytest
import yaml

from .conftest import NODES, record_timing, run_playbook, ssh, tail

pytestmark = pytest.mark.lab

SLACK_S = 5.0  # HTTP, process and file latencies on a loaded 2-core machine


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", duration))


def listener(host: str, address: str, port: int) -> dict[str, Any]:
    """The process that listens on address:port on a machine: its pid, argv and systemd unit."""
    out = ssh(host, f"ss -Hltnp 'src {address}:{port}'", check=True).stdout
    pids = re.findall(r"pid=(\d+)", out)
    assert pids, f"nothing listens on {address}:{port} on {host}: {out!r}"
    argv = ssh(host, f"tr '\\0' '\\n' < /proc/{pids[0]}/cmdline", check=True).stdout.splitlines()
    unit = ssh(host, f"ps -o unit= -p {pids[0]}", check=True).stdout.strip()
    return {"pid": int(pids[0]), "argv": argv, "unit": unit}


def flag(argv: list[str], name: str) -> str:
    """The value of ``--name=value`` or ``--name value`` in a command line."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
    raise AssertionError(f"{name} not in {argv}")


def read_yaml(host: str, path: str) -> Any:
    return yaml.safe_load(ssh(host, f"cat {shlex.quote(path)}", check=True).stdout)


def deployed_timing(lab: dict) -> dict[str, float]:
    """for / scrape / evaluation / group_wait / group_interval as deployed on the mon machine."""
    mon = lab["addresses"]["mon"]
    prometheus_config = flag(listener("mon", mon, 9090)["argv"], "--config.file")
    prometheus = read_yaml("mon", prometheus_config)
    alertmanager = read_yaml("mon", flag(listener("mon", mon, 9093)["argv"], "--config.file"))
    rules: dict[str, Any] = {"groups": []}
    for pattern in prometheus.get("rule_files", []):
        listing = ssh("mon", f"ls -1 {pattern}", check=True).stdout.split()  # a rule_files entry may be a glob
        for path in listing:
            rules["groups"] += read_yaml("mon", path)["groups"]
    rule = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "DatabaseDown")
    return {
        "for": seconds(rule["for"]),
        "scrape": seconds(prometheus["global"]["scrape_interval"]),
        "evaluation": seconds(prometheus["global"]["evaluation_interval"]),
        "group_wait": seconds(alertmanager["route"]["group_wait"]),
        "group_interval": seconds(alertmanager["route"]["group_interval"]),
    }


def records(path: str, skip: int) -> list[dict[str, Any]]:
    """The receiver's notifications on the mon machine (JSON lines), from line ``skip`` on."""
    out = ssh("mon", f"cat {shlex.quote(path)} 2>/dev/null || true", check=True).stdout
    return [json.loads(line) for line in out.splitlines()[skip:] if line.strip()]


def find(path: str, skip: int, node: str, status: str) -> dict[str, Any] | None:
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
    addresses = lab["addresses"]
    prometheus = f"http://{addresses['mon']}:9090"
    notifications = flag(listener("mon", addresses["mon"], 9095)["argv"], "--output")
    timing = deployed_timing(lab)
    fire_bound = timing["for"] + 2 * timing["scrape"] + timing["group_wait"]

    cluster = get_json(f"http://{addresses[NODES[0]]}:8008/cluster")
    replicas = [m["name"] for m in cluster["members"] if m["role"] == "replica"]
    assert replicas, f"no asynchronous replica to stop: {cluster['members']}"
    node = replicas[0]
    address = addresses[node]
    # Patroni's unit: the unit of the process that serves its REST API.
    unit = listener(node, address, 8008)["unit"]
    assert unit.endswith(".service"), f"Patroni on {node} runs in no systemd service: {unit!r}"

    # Start from a quiet state: nothing left pending or firing from earlier tests.
    def quiet() -> bool:
        alerts = get_json(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
        return not any(a["labels"]["alertname"] == "DatabaseDown" for a in alerts)

    wait_for("no DatabaseDown pending or firing before the fault", quiet, timeout=240, interval=2)
    skip = len(records(notifications, 0))

    healed = False
    try:
        stop = ssh(node, f"systemctl stop {shlex.quote(unit)}")
        t_fault = time.time()
        assert stop.returncode == 0, f"systemctl stop {unit} on {node}: {stop.stderr}"

        fired = wait_for(
            f"a DatabaseDown notification for {node}",
            lambda: find(notifications, skip, node, "firing"),
            timeout=fire_bound + 90,
        )
        fault_to_notification = fired["record"]["received_at"] - t_fault

        start = ssh(node, f"systemctl start {shlex.quote(unit)}")
        t_heal = time.time()
        healed = True
        assert start.returncode == 0, f"systemctl start {unit} on {node}: {start.stderr}"

        def postgres_up() -> float | None:
            try:
                with urllib.request.urlopen(f"http://{address}:8008/health", timeout=2) as response:
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
            ssh(node, f"systemctl start {shlex.quote(unit)}")

    record_timing("alert_database_down_fault_to_notification_s", fault_to_notification)
    record_timing("alert_database_down_bound_s", fire_bound)
    record_timing("alert_database_down_heal_to_resolved_s", heal_to_resolved)
    record_timing("alert_database_down_pg_start_s", t_pg_up - t_heal)

    notification = fired["record"]["notification"]
    alert = fired["alert"]
    assert notification["receiver"] == "lab"
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["team"] == "database"
    assert alert["labels"]["job"] == "postgres" and alert["labels"]["instance"] == f"{address}:9187"
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
    """On every machine, the exporters and servers listen on its own address only."""
    expected = {node: (9100, 9187, 9121, 9122) for node in NODES} | {"mon": (9090, 9093, 9095, 9100)}
    watched = (9090, 9093, 9094, 9095, 9100, 9187, 9121, 9122)
    for host, address in lab["addresses"].items():
        out = ssh(host, "ss -Hltn", check=True).stdout
        listening = {line.split()[3] for line in out.splitlines()}
        for port in expected.get(host, ()):
            assert f"{address}:{port}" in listening, (host, port, sorted(listening))
        for port in watched:
            wildcard = {f"0.0.0.0:{port}", f"*:{port}", f"[::]:{port}"} & listening
            assert not wildcard, (host, port, wildcard)

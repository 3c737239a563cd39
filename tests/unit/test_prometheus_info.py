"""hastack.ha.prometheus_info and hastack.ha.prometheus_problems against a real
Prometheus 2.42 and Alertmanager 0.25 (Debian binaries), plus the lab's alert
receiver end to end: Prometheus evaluates the role's rules, fires the Watchdog,
Alertmanager routes it with the role's alertmanager.yml to the receiver, which
records it.

Everything listens on 127.0.0.1 with ports the kernel hands out, so the test
never meets a lab. Costs about 10 s (Prometheus evaluates every second here).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible.module_utils.testing import patch_module_args
from ansible_collections.hastack.ha.plugins.filter.prometheus import prometheus_problems
from ansible_collections.hastack.ha.plugins.modules import prometheus_info
from monitoring_templates import render_alertmanager, render_rules

REPO = Path(__file__).resolve().parents[2]
NOTIFY_PLAYBOOK = REPO / "playbooks" / "notify.yml"
RECEIVER = REPO / "roles" / "prometheus_alertmanager" / "files" / "alert_receiver.py"
GROUPS = [
    "hastack.meta", "hastack.node", "hastack.postgres", "hastack.redis",
    "hastack.kubernetes", "hastack.app", "hastack.slo",
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("prometheus-alertmanager") is None,
    reason="prometheus/alertmanager missing: `make unit` installs them",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > end:
            raise TimeoutError(f"{url} did not answer 200 within {deadline_s} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Prometheus, Alertmanager and the receiver, wired as the role wires them."""
    work = tmp_path_factory.mktemp("stack")
    ports = {name: free_port() for name in ("prometheus", "alertmanager", "receiver", "dead")}
    (work / "hastack.rules.yml").write_text(render_rules())
    am_config = render_alertmanager(
        prometheus_alertmanager_lab_receiver=True,
        prometheus_alertmanager_receiver_port=ports["receiver"],
        prometheus_alertmanager_group_wait="1s",
        prometheus_alertmanager_group_interval="1s",
    )
    (work / "alertmanager.yml").write_text(am_config)
    (work / "prometheus.yml").write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(work / "hastack.rules.yml")],
                "alerting": {
                    "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports['alertmanager']}"]}]}]
                },
                "scrape_configs": [
                    {"job_name": "prometheus", "static_configs": [
                        {"targets": [f"127.0.0.1:{ports['prometheus']}"], "labels": {"node": "mon"}}]},
                    {"job_name": "alertmanager", "static_configs": [
                        {"targets": [f"127.0.0.1:{ports['alertmanager']}"], "labels": {"node": "mon"}}]},
                    {"job_name": "postgres", "static_configs": [
                        {"targets": [f"127.0.0.1:{ports['dead']}"], "labels": {"node": "node-a"}}]},
                ],
            }
        )
    )
    notifications = work / "notifications.jsonl"
    commands = {
        "receiver": [sys.executable, str(RECEIVER), "--listen", f"127.0.0.1:{ports['receiver']}",
                     "--output", str(notifications)],
        "alertmanager": ["prometheus-alertmanager", f"--config.file={work / 'alertmanager.yml'}",
                         f"--storage.path={work / 'am'}", f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                         "--cluster.listen-address="],
        "prometheus": ["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
                       f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                       # the first evaluation can come before the notifier knows
                       # Alertmanager; resend within a second, not the default minute
                       "--rules.alert.resend-delay=1s"],
    }  # fmt: skip
    procs = []
    try:
        for name, argv in commands.items():
            log = (work / f"{name}.log").open("w")
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        wait_http(f"http://127.0.0.1:{ports['receiver']}/-/healthy")
        wait_http(f"http://127.0.0.1:{ports['alertmanager']}/-/ready")
        wait_http(f"http://127.0.0.1:{ports['prometheus']}/-/ready")
        yield {
            "prometheus": f"http://127.0.0.1:{ports['prometheus']}",
            "alertmanager": f"http://127.0.0.1:{ports['alertmanager']}",
            "dead": f"127.0.0.1:{ports['dead']}",
            "notifications": notifications,
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def run_module(capsys: pytest.CaptureFixture[str], args: dict[str, Any]) -> dict[str, Any]:
    with patch_module_args(args), pytest.raises(SystemExit):
        prometheus_info.main()
    return json.loads(capsys.readouterr().out)


def scraped(capsys: pytest.CaptureFixture[str], stack: dict[str, Any]) -> dict[str, Any]:
    """The module's answer once every target was scraped and the Watchdog fires."""
    end = time.monotonic() + 30
    while True:
        result = run_module(
            capsys, {"prometheus_url": stack["prometheus"], "alertmanager_url": stack["alertmanager"]}
        )
        assert not result.get("failed"), result
        monitoring = result["monitoring"]
        firing = {a["name"] for a in monitoring["alerts"] if a["state"] == "firing"}
        if (
            all(t["health"] != "unknown" for t in monitoring["targets"])
            and "Watchdog" in firing
            and monitoring["config_reload_successful"] is not None
        ):
            return result
        assert time.monotonic() < end, monitoring
        time.sleep(0.5)


def test_module_reports_targets_groups_alerts_and_alertmanager(capsys, stack):
    result = scraped(capsys, stack)

    assert result["changed"] is False
    monitoring = result["monitoring"]
    health = {(t["job"], t["node"]): t["health"] for t in monitoring["targets"]}
    assert health == {("alertmanager", "mon"): "up", ("prometheus", "mon"): "up", ("postgres", "node-a"): "down"}
    assert sorted(g["name"] for g in monitoring["rule_groups"]) == sorted(GROUPS)
    assert sum(g["rules"] for g in monitoring["rule_groups"]) == 32
    assert monitoring["config_reload_successful"] is True
    alertmanager = monitoring["alertmanager"]
    assert alertmanager["reachable"] and alertmanager["config_loaded"], alertmanager
    assert alertmanager["version"] == "0.25.0"
    assert {"lab", "critical", "database", "infra", "default", "watchdog"} <= set(alertmanager["receivers"])


def test_filter_names_the_down_target_and_nothing_else(capsys, stack):
    monitoring = scraped(capsys, stack)["monitoring"]

    problems = prometheus_problems(monitoring, expected_groups=GROUPS, expected_jobs=["prometheus", "postgres"])

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"target postgres on node-a ({stack['dead']}) is down: ")
    assert "connection refused" in problems[0]


def test_filter_allows_the_targets_and_alerts_of_nodes_known_down(capsys, stack):
    monitoring = scraped(capsys, stack)["monitoring"]
    # an alert about the dead node, and one about another node, both critical and firing
    alerts = [
        {"name": "NodeDown", "state": "firing", "severity": "critical", "labels": {"node": "node-a"}},
        {"name": "NodeDown", "state": "firing", "severity": "critical", "labels": {"node": "node-b"}},
    ]
    monitoring = {**monitoring, "alerts": [*monitoring["alerts"], *alerts]}

    problems = prometheus_problems(monitoring, expected_groups=GROUPS, down_nodes=["node-a"])

    assert len(problems) == 1, problems
    assert problems[0].startswith("critical alert NodeDown firing (node=node-b)"), problems
    assert len(prometheus_problems(monitoring, expected_groups=GROUPS)) == 3
    with pytest.raises(AnsibleFilterError, match="down_nodes must be a list of node names"):
        prometheus_problems(monitoring, down_nodes="node-a")


def test_filter_flags_missing_groups_jobs_and_critical_alerts(capsys, stack):
    monitoring = scraped(capsys, stack)["monitoring"]

    problems = prometheus_problems(
        monitoring, expected_groups=["hastack.nope"], expected_jobs=["redis"], allowed_firing=[], severities=["none"]
    )

    assert "rule group hastack.nope is not loaded" in problems
    assert "no scrape target of job redis (expected from the inventory)" in problems
    assert any(p.startswith("none alert Watchdog firing") for p in problems), problems


def test_alertmanager_unreachable_is_a_problem_not_a_failure(capsys, stack):
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_module(capsys, {"prometheus_url": stack["prometheus"], "alertmanager_url": dead, "timeout": 1})

    assert not result.get("failed"), result
    assert result["monitoring"]["alertmanager"]["reachable"] is False
    problems = prometheus_problems(result["monitoring"])
    assert any(p.startswith("Alertmanager is unreachable: ") and dead in p for p in problems), problems


def test_module_fails_naming_prometheus_when_it_does_not_answer(capsys):
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_module(capsys, {"prometheus_url": dead, "timeout": 1})

    assert result["failed"] is True
    assert f"{dead}/api/v1/targets" in result["msg"]
    assert "unreachable" in result["msg"]


def wait_notification(stack: dict[str, Any], alertname: str, deadline_s: float = 30) -> tuple[dict, dict]:
    """The first notification the lab receiver recorded with an alert ``alertname``, and that alert."""
    end = time.monotonic() + deadline_s
    while True:
        lines = stack["notifications"].read_text().splitlines() if stack["notifications"].exists() else []
        records = [json.loads(line) for line in lines]
        found = [
            (r, a) for r in records for a in r["notification"]["alerts"] if a["labels"]["alertname"] == alertname
        ]  # fmt: skip
        if found:
            return found[0]
        if time.monotonic() > end:
            with urllib.request.urlopen(stack["alertmanager"] + "/api/v2/alerts", timeout=3) as response:
                known = json.loads(response.read())
            pytest.fail(f"no {alertname} notification recorded: {records}; Alertmanager holds {known}")
        time.sleep(0.5)


def test_watchdog_reaches_the_lab_receiver_through_alertmanager(capsys, stack):
    """Prometheus -> Alertmanager (the role's routes) -> receiver -> JSON lines."""
    scraped(capsys, stack)
    record, _ = wait_notification(stack, "Watchdog")
    assert isinstance(record["received_at"], float)
    assert record["notification"]["receiver"] == "lab"
    assert record["notification"]["status"] == "firing"


def test_notify_playbook_reaches_the_lab_receiver_through_alertmanager(stack, tmp_path):
    """playbooks/notify.yml (the AWX workflow's failure path) -> Alertmanager -> receiver."""
    port = int(stack["alertmanager"].rsplit(":", 1)[1])
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps({"all": {"children": {"monitoring": {"hosts": {"mon": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "ha_address": "127.0.0.1", "prometheus_alertmanager_alertmanager_port": port}}}}}}))  # fmt: skip
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(NOTIFY_PLAYBOOK),
         "-e", json.dumps({"awx_workflow_job_name": "hastack deploy and verify", "awx_workflow_job_id": 42})],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr

    _, alert = wait_notification(stack, "HastackRolloutFailed")
    assert alert["labels"] == {
        "alertname": "HastackRolloutFailed", "severity": "warning", "team": "infra", "source": "awx",
    }  # fmt: skip
    assert alert["annotations"]["summary"] == "AWX workflow hastack deploy and verify (job 42) failed"
    assert alert["annotations"]["runbook_url"].endswith("docs/runbooks.md#hastackrolloutfailed")
    assert alert["status"] == "firing"
    # it resolves by itself an hour later (notify_duration_s)
    with urllib.request.urlopen(stack["alertmanager"] + "/api/v2/alerts?filter=alertname%3DHastackRolloutFailed",
                                timeout=3) as response:
        (posted,) = json.loads(response.read())
    starts = datetime.fromisoformat(posted["startsAt"].replace("Z", "+00:00"))
    ends = datetime.fromisoformat(posted["endsAt"].replace("Z", "+00:00"))
    assert 3590 <= (ends - starts).total_seconds() <= 3610


def test_filter_rejects_the_wrong_input():
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match=r"'monitoring' key of hastack\.ha\.prometheus_info"):
        prometheus_problems({"monitoring": {}})

"""Rolling update on the suite's fleet (playbooks/rolling_update.yml).

A dry run changes nothing; bad options are refused by name. A real one
changes the Patroni version (to the release before the role's pin: a new
virtualenv, so a new unit command) and restarts every PostgreSQL, Redis,
Sentinel and app daemon one at a time: every member then runs that Patroni,
the PostgreSQL and Redis parts stay within the switchover/failover drills'
limits (the engine's reports), and the cluster is healthy. What restarted is
read from each machine's systemd over SSH (a restart changes a unit's main
PID and start time). The fleet keeps that version until test_90 destroys it.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import yaml

from .conftest import ssh
from .drill_helpers import REPO, is_healthy, node_addresses, patroni_cluster, run_playbook, wait_healthy

pytestmark = pytest.mark.lab

# The role's pin is 4.1.5 (roles/patroni_postgres/defaults/main.yml).
OTHER_PATRONI = "4.1.4"
INVENTORY_DRILLS = REPO / "inventories" / "lab" / "group_vars" / "all" / "drills.yml"
# The stack's units on a data node (Debian's names, and the app's).
STACK_UNITS = ("patroni", "redis-server", "redis-sentinel", "hastack-app")


def patroni_versions(lab: dict) -> dict[str, str]:
    out = {}
    for address in node_addresses(lab):
        with urllib.request.urlopen(f"http://{address}:8008/patroni", timeout=3) as resp:
            body = json.loads(resp.read())
        out[address] = body["patroni"]["version"]
    return out


def services(lab: dict) -> dict[str, str]:
    """systemd's view of the stack's units on the data nodes: "node unit" -> "state pid start".

    A restart changes the main PID and the start time.
    """
    script = (
        "for u in $(systemctl list-units --type=service --all --plain --no-legend | awk '{print $1}'); do"
        ' systemctl show -p Id,ActiveState,MainPID,ExecMainStartTimestampMonotonic "$u"; echo; done'
    )
    found = {}
    for node in lab["nodes"]:
        out = ssh(node, script, check=True).stdout
        for block in out.split("\n\n"):
            props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            name = props.get("Id", "").removesuffix(".service")
            if name in STACK_UNITS:
                found[f"{node} {name}"] = (
                    f"{props['ActiveState']} pid {props['MainPID']} start {props['ExecMainStartTimestampMonotonic']}"
                )
    return found


def reports(report_dir: Path) -> dict[str, dict]:
    """Report name (rolling_update, redis-rolling_update) -> its JSON."""
    paths = sorted(report_dir.glob("*rolling_update-*.json"))
    return {p.name.rsplit("-", 1)[0]: json.loads(p.read_text()) for p in paths}


def test_dry_run_changes_nothing(lab, tmp_path):
    wait_healthy(lab)
    before = services(lab)
    rc, output, _ = run_playbook(
        lab,
        "playbooks/rolling_update.yml",
        "-e",
        "rolling_update_dry_run=true",
        "-e",
        f"drill_report_dir={tmp_path}",
        timeout=1200,
    )
    assert rc == 0, output[-3000:]
    assert "Rolling update (dry run: nothing changes)" in output
    assert services(lab) == before, "a dry run restarted something"
    assert list(tmp_path.glob("*.json")) == [], "a dry run wrote a report"


def test_bad_components_are_refused_by_name(lab, tmp_path):
    before = services(lab)
    rc, output, _ = run_playbook(
        lab, "playbooks/rolling_update.yml", "-e", '{"rolling_update_components": ["postgres", "mysql"]}'
    )
    assert rc != 0
    assert "rolling_update_components must be a non-empty list of postgres, redis, app" in output, output[-2000:]
    assert services(lab) == before


def test_rolling_update_keeps_the_limits(lab, tmp_path):
    wait_healthy(lab)
    version = OTHER_PATRONI
    extra = ["-e", f"drill_report_dir={tmp_path}", "-e", f"patroni_postgres_patroni_version={version}"]
    before = services(lab)

    rc, output, seconds = run_playbook(lab, "playbooks/rolling_update.yml", *extra, timeout=3000)

    found = reports(tmp_path)
    summary = {
        k: {m: r["metrics"].get(m) for m in ("write_gap_s", "lost_writes", "unknown_writes", "rejoin_s")}
        | {"verdict": r["verdict"]}
        for k, r in found.items()
    }
    assert rc == 0, f"{summary}\n{output[-4000:]}"
    assert set(found) == {"rolling_update", "redis-rolling_update"}, summary
    for name, report in found.items():
        metrics, limits = report["metrics"], report["thresholds"]
        assert report["verdict"] == "pass" and report["violations"] == [], (name, summary)
        assert metrics["lost_writes"] == 0, (name, summary)
        assert metrics["write_gap_s"] <= limits["max_write_gap_s"], (name, summary)
        assert metrics["split_brain"] is False, (name, summary)
    pg = found["rolling_update"]
    assert pg["context"]["old_leader"] != pg["context"]["new_leader"], summary
    switchover = yaml.safe_load(INVENTORY_DRILLS.read_text())["drill_pg_max_write_gap_s"]["switchover"]
    assert pg["thresholds"]["max_write_gap_s"] == float(switchover), "held to the switchover drill's limit"

    assert set(patroni_versions(lab).values()) == {version}, patroni_versions(lab)
    assert is_healthy(patroni_cluster(lab))
    after = services(lab)
    restarted = {n for n in before if before[n] != after.get(n)}
    patroni = {n for n in before if n.endswith(" patroni")}
    assert len(patroni) == len(lab["nodes"]), f"not one Patroni unit per node: {sorted(before)}"
    assert patroni <= restarted, f"not every Patroni restarted: {sorted(patroni - restarted)}"
    for unit in ("redis-server", "redis-sentinel", "hastack-app"):
        group = {n for n in before if n.endswith(f" {unit}")}
        assert group and group <= restarted, f"not every {unit} restarted: {sorted(group - restarted)}"
    print(f"rolling update to Patroni {version} in {seconds:.0f} s: {summary}")

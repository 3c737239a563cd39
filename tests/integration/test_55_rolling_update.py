"""Rolling update on the suite's lab (playbooks/rolling_update.yml).

A dry run changes nothing; bad options are refused by name. A real one
changes the Patroni version (to the release before the role's pin: a new
virtualenv, so a new program command) and restarts every PostgreSQL, Redis,
Sentinel and app daemon one at a time: every member then runs that Patroni,
the PostgreSQL and Redis parts stay within the switchover/failover drills'
limits (the engine's reports), and the cluster is healthy. The lab keeps
that version until test_90 destroys it.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from .drill_helpers import REPO, is_healthy, lab_var, node_addresses, patroni_cluster, run_playbook, wait_healthy

pytestmark = pytest.mark.lab

# The role's pin is 4.1.5 (roles/patroni_postgres/defaults/main.yml).
OTHER_PATRONI = "4.1.4"
INVENTORY_DRILLS = REPO / "inventories" / "local" / "group_vars" / "all" / "drills.yml"


def patroni_versions(lab: dict) -> dict[str, str]:
    out = {}
    for address in node_addresses(lab):
        with urllib.request.urlopen(f"http://{address}:8008/patroni", timeout=3) as resp:
            body = json.loads(resp.read())
        out[address] = body["patroni"]["version"]
    return out


def programs(lab: dict) -> dict[str, str]:
    """supervisord's view of the lab's programs: name -> "RUNNING pid N" (a restart changes the pid)."""
    out = subprocess.run(["supervisorctl", "status"], capture_output=True, text=True, timeout=60).stdout
    name = lab_var(lab, "ha_lab_name", "hastack")
    found = {}
    for line in out.splitlines():
        if line.startswith(f"{name}-"):
            match = re.match(r"(\S+)\s+(\S+)(?:\s+pid (\d+))?", line)
            if match:
                found[match[1]] = f"{match[2]} pid {match[3]}"
    return found


def reports(report_dir: Path) -> dict[str, dict]:
    """Report name (rolling_update, redis-rolling_update) -> its JSON."""
    paths = sorted(report_dir.glob("*rolling_update-*.json"))
    return {p.name.rsplit("-", 1)[0]: json.loads(p.read_text()) for p in paths}


def test_dry_run_changes_nothing(lab, tmp_path):
    wait_healthy(lab)
    before = programs(lab)
    rc, output, _ = run_playbook(
        lab, "playbooks/rolling_update.yml", "-e", "rolling_update_dry_run=true", "-e", f"drill_report_dir={tmp_path}"
    )
    assert rc == 0, output[-3000:]
    assert "Rolling update (dry run: nothing changes)" in output
    assert programs(lab) == before, "a dry run restarted something"
    assert list(tmp_path.glob("*.json")) == [], "a dry run wrote a report"


def test_bad_components_are_refused_by_name(lab, tmp_path):
    before = programs(lab)
    rc, output, _ = run_playbook(
        lab, "playbooks/rolling_update.yml", "-e", '{"rolling_update_components": ["postgres", "mysql"]}'
    )
    assert rc != 0
    assert "rolling_update_components must be a non-empty list of postgres, redis, app" in output, output[-2000:]
    assert programs(lab) == before


def test_rolling_update_keeps_the_limits(lab, tmp_path):
    wait_healthy(lab)
    version = OTHER_PATRONI
    extra = ["-e", f"drill_report_dir={tmp_path}", "-e", f"patroni_postgres_patroni_version={version}"]
    before = programs(lab)

    rc, output, seconds = run_playbook(lab, "playbooks/rolling_update.yml", *extra, timeout=1200)

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
    after = programs(lab)
    restarted = {n for n in before if before[n] != after.get(n)}
    patroni = {n for n in before if n.endswith("-patroni")}
    assert patroni <= restarted, f"not every Patroni restarted: {sorted(patroni - restarted)}"
    for suffix in ("-redis", "-sentinel", "-app"):
        group = {n for n in before if n.endswith(suffix)}
        assert group and group <= restarted, f"not every {suffix[1:]} restarted: {sorted(group - restarted)}"
    print(f"rolling update to Patroni {version} in {seconds:.0f} s: {summary}")

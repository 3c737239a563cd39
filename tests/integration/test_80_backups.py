"""Backups on the suite's lab: the scheduled backup runs once whichever member
it fires on, and the restore drill (playbooks/drill_restore.yml) restores
both repositories to a point in time with every row before it and none after.

Runs after the drills (the cluster may be on a later timeline than its first
backup, which a point-in-time restore must follow) and before test_90_destroy.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import record_timing
from .drill_helpers import lab_var, run_playbook, wait_healthy

pytestmark = pytest.mark.lab


def pgbackrest_info(lab: dict) -> dict:
    name = lab_var(lab, "ha_lab_name", "hastack")
    out = subprocess.run(
        [
            "runuser", "-u", "postgres", "--", "pgbackrest",
            f"--config=/etc/hastack/{name}-node-a/pgbackrest.conf", f"--stanza={name}", "--output=json", "info",
        ],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return json.loads(out)[0]


def backups_per_repo(info: dict) -> dict[int, int]:
    counts: dict[int, int] = {}
    for backup in info.get("backup", []):
        key = backup["database"]["repo-key"]
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_scheduled_backup_runs_only_on_the_leader(lab):
    wait_healthy(lab)
    name = lab_var(lab, "ha_lab_name", "hastack")
    before = backups_per_repo(pgbackrest_info(lab))
    outputs = {}
    for node in lab["nodes"]:
        # What cron runs on every member at 02:00 (the incremental type keeps it quick).
        proc = subprocess.run(
            ["runuser", "-u", "postgres", "--", f"/etc/hastack/{name}-{node}/pgbackrest-backup", "incr"],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, f"{node}: {proc.stdout}{proc.stderr}"
        outputs[node] = proc.stdout
    after = backups_per_repo(pgbackrest_info(lab))
    assert after == {repo: count + 1 for repo, count in before.items()}, (before, after, outputs)
    skipped = [node for node, out in outputs.items() if "is not the leader: no backup here" in out]
    assert len(skipped) == len(lab["nodes"]) - 1, outputs


def test_restore_drill_restores_both_repositories_to_the_target(lab, tmp_path):
    wait_healthy(lab)
    rc, output, seconds = run_playbook(
        lab, "playbooks/drill_restore.yml", "-e", f"drill_report_dir={tmp_path}", timeout=900
    )
    record_timing("drill_restore_s", seconds)
    reports = sorted(tmp_path.glob("restore-*.json"))
    assert reports, f"no report (rc {rc}):\n{output[-3000:]}"
    report = json.loads(reports[-1].read_text())
    summary = json.dumps({k: report[k] for k in ("repos", "rpo", "violations")}, indent=1)
    assert rc == 0, f"{summary}\n{output[-3000:]}"
    assert report["verdict"] == "pass" and report["violations"] == [], summary
    assert [r["repo"] for r in report["repos"]] == [1, 2], summary
    for repo in report["repos"]:
        assert repo["check"]["ok"], summary
        assert repo["check"]["missing_before"] == [] and repo["check"]["present_after"] == [], summary
        assert repo["check"]["present"] == int(report["rows_before_target"]), summary
        assert 0 < repo["timings"]["rto_s"] <= float(report["thresholds"]["max_rto_s"]), summary
        record_timing(f"restore_repo{repo['repo']}_rto_s", repo["timings"]["rto_s"])
    assert report["rpo"]["archive_failed_count"] is not None
    # The live cluster was never touched, and the scratch instance is gone.
    wait_healthy(lab)
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert f"{lab_var(lab, 'ha_lab_name', 'hastack')}-restore-drill" not in procs

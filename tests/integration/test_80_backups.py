"""Backups on the suite's fleet: the scheduled backup runs once whichever
member it fires on, and the restore drill (playbooks/drill_restore.yml)
restores both repositories (the lab's S3 buckets on mon) to a point in time
with every row before it and none after.

Everything about a member is read on its machine over SSH: the schedule
(cron), the backup script it names, and the pgBackRest command line in it.

Runs after the drills (the cluster may be on a later timeline than its first
backup, which a point-in-time restore must follow) and before test_90_destroy.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest

from .conftest import record_timing, ssh
from .drill_helpers import run_playbook, wait_healthy

pytestmark = pytest.mark.lab


def scheduled_backup(node: str) -> tuple[str, str]:
    """(OS user, script) of the member's scheduled backup, as its cron file says."""
    cron = ssh(node, "grep -h pgbackrest-backup /etc/cron.d/*", check=True).stdout
    for line in cron.splitlines():
        fields = line.split()
        if line.startswith("#") or len(fields) < 7:
            continue
        return fields[5], fields[6]  # m h dom mon dow user command
    raise AssertionError(f"{node}: no scheduled pgBackRest backup in /etc/cron.d: {cron!r}")


def pgbackrest_command(node: str, script: str) -> str:
    """``pgbackrest --config=... --stanza=...`` as the member's backup script calls it."""
    text = ssh(node, f"cat {shlex.quote(script)}", check=True).stdout
    found = re.search(r"^(\S*pgbackrest --config=\S+ --stanza=\S+)", text, re.M)
    assert found, f"{node}: no pgbackrest command line in {script}:\n{text}"
    return found.group(1)


def pgbackrest_info(node: str) -> dict:
    user, script = scheduled_backup(node)
    cmd = f"runuser -u {user} -- {pgbackrest_command(node, script)} --output=json info"
    return json.loads(ssh(node, cmd, timeout=120, check=True).stdout)[0]


def backups_per_repo(info: dict) -> dict[int, int]:
    counts: dict[int, int] = {}
    for backup in info.get("backup", []):
        key = backup["database"]["repo-key"]
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_scheduled_backup_runs_only_on_the_leader(lab):
    wait_healthy(lab)
    first = lab["nodes"][0]
    before = backups_per_repo(pgbackrest_info(first))
    outputs = {}
    for node in lab["nodes"]:
        # What cron runs on every member (the incremental type keeps it quick).
        user, script = scheduled_backup(node)
        proc = ssh(node, f"runuser -u {user} -- {script} incr", timeout=600)
        assert proc.returncode == 0, f"{node}: {proc.stdout}{proc.stderr}"
        outputs[node] = proc.stdout
    after = backups_per_repo(pgbackrest_info(first))
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
    # The live cluster was never touched, and no member runs a scratch instance or keeps its directory.
    wait_healthy(lab)
    for node in lab["nodes"]:
        # [r]: the pattern does not match the command line of the shell that runs it
        procs = ssh(node, "pgrep -af '[r]estore-drill'").stdout
        assert procs.strip() == "", f"{node} still runs the restore drill's scratch instance: {procs}"
        assert ssh(node, "test -e /var/lib/hastack/restore-drill").returncode == 1, f"{node} kept the drill's directory"

"""pgbackrest_summary / pgbackrest_problems on a real ``pgbackrest info --output=json``.

The fixture was captured from the lab (two posix repositories, one full
backup in each, WAL archived to both); the broken variants are edits of it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.hastack.ha.plugins.filter.pgbackrest import (
    FilterModule,
    pgbackrest_problems,
    pgbackrest_summary,
)

INFO = json.loads((Path(__file__).parent / "fixtures" / "pgbackrest" / "info-two-repos.json").read_text())
STOP = {b["database"]["repo-key"]: b["timestamp"]["stop"] for b in INFO[0]["backup"]}


def test_summary_per_repository():
    summary = pgbackrest_summary(INFO, STOP[2] + 100)
    assert summary["stanza"] == "hastack" and summary["status_code"] == 0
    repos = {r["repo"]: r for r in summary["repos"]}
    assert sorted(repos) == [1, 2]
    assert repos[1]["full_backups"] == 1 and repos[1]["last_full_backup"].endswith("F")
    assert repos[1]["last_full_age_s"] == pytest.approx(STOP[2] + 100 - STOP[1])
    assert repos[2]["last_full_age_s"] == pytest.approx(100)
    assert repos[1]["archive_ok"] and repos[1]["wal_max"] >= repos[1]["wal_min"]
    assert pgbackrest_problems(summary) == []


def test_summary_accepts_the_json_text_and_a_stanza_name():
    summary = pgbackrest_summary(json.dumps(INFO), STOP[1], stanza="hastack")
    assert [r["repo"] for r in summary["repos"]] == [1, 2]
    with pytest.raises(AnsibleFilterError, match="no stanza 'other'"):
        pgbackrest_summary(INFO, STOP[1], stanza="other")


def test_old_full_backup_is_a_problem():
    now = STOP[1] + 27 * 3600
    problems = pgbackrest_problems(pgbackrest_summary(INFO, now))
    assert len(problems) == 2
    assert problems[0].startswith("stanza hastack repo1: last full backup")
    assert "h old (limit 26.0 h)" in problems[0]
    assert pgbackrest_problems(pgbackrest_summary(INFO, now), max_full_age_s=28 * 3600) == []


def test_repository_without_backup_or_wal_is_a_problem():
    info = copy.deepcopy(INFO)
    info[0]["backup"] = [b for b in info[0]["backup"] if b["database"]["repo-key"] != 2]
    info[0]["archive"] = [a for a in info[0]["archive"] if a["database"]["repo-key"] != 2]
    problems = pgbackrest_problems(pgbackrest_summary(info, STOP[1]))
    assert problems == ["stanza hastack repo2: no full backup", "stanza hastack repo2: holds no archived WAL"]


def test_failed_backup_does_not_count_and_bad_status_is_reported():
    info = copy.deepcopy(INFO)
    for b in info[0]["backup"]:
        b["error"] = True
    info[0]["status"] = {"code": 2, "message": "no valid backups"}
    info[0]["repo"][0]["status"] = {"code": 99, "message": "other"}
    problems = pgbackrest_problems(pgbackrest_summary(info, STOP[1]))
    assert "stanza hastack: no valid backups (code 2)" in problems
    assert "stanza hastack repo1: other (code 99)" in problems
    assert "stanza hastack repo1: no full backup" in problems


def test_missing_stanza_from_info():
    # What `pgbackrest info` prints before stanza-create.
    missing = [
        {
            "archive": [],
            "backup": [],
            "db": [],
            "name": "hastack",
            "repo": [{"cipher": "none", "key": 1, "status": {"code": 1, "message": "missing stanza path"}}],
            "status": {"code": 1, "message": "missing stanza path"},
        }
    ]
    problems = pgbackrest_problems(pgbackrest_summary(missing, 0))
    assert problems[0] == "stanza hastack: missing stanza path (code 1)"


@pytest.mark.parametrize("bad", ["not json", 42, [1, 2]])
def test_summary_rejects_what_is_not_pgbackrest_info(bad):
    with pytest.raises(AnsibleFilterError, match="pgbackrest_summary"):
        pgbackrest_summary(bad, 0)


def test_problems_rejects_other_input_and_filters_are_registered():
    with pytest.raises(AnsibleFilterError, match="expected the output of pgbackrest_summary"):
        pgbackrest_problems({"stanza": "x"})
    assert set(FilterModule().filters()) == {"pgbackrest_summary", "pgbackrest_problems"}

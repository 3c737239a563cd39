"""Filters over ``pgbackrest info --output=json``: what a backup check needs.

``pgbackrest_summary`` turns the raw answer into one dictionary per
repository (its status, the last full backup and its age, the WAL range it
holds); ``pgbackrest_problems`` judges it. Plain functions, unit-tested with
plain calls (tests/unit/test_pgbackrest_filters.py).
"""

from __future__ import annotations

import json
from typing import Any

from ansible.errors import AnsibleFilterError

DEFAULT_MAX_FULL_AGE_S = 26 * 3600


def _stanza(info: Any, stanza: str | None, filter_name: str) -> dict[str, Any]:
    if isinstance(info, str):
        try:
            info = json.loads(info)
        except ValueError as ex:
            raise AnsibleFilterError(f"{filter_name}: the input is not pgbackrest's JSON ({ex})") from ex
    if isinstance(info, dict):
        info = [info]
    if not isinstance(info, list) or not all(isinstance(s, dict) for s in info):
        raise AnsibleFilterError(f"{filter_name}: expected the list pgbackrest info --output=json prints")
    if stanza is None:
        if len(info) != 1:
            raise AnsibleFilterError(f"{filter_name}: {len(info)} stanzas in the input; name one with stanza=")
        return info[0]
    for s in info:
        if s.get("name") == stanza:
            return s
    raise AnsibleFilterError(f"{filter_name}: no stanza '{stanza}' in the input")


def _repo_key(item: dict[str, Any]) -> int | None:
    database = item.get("database") or {}
    key = database.get("repo-key")
    return int(key) if key is not None else None


def pgbackrest_summary(info: Any, now: float, stanza: str | None = None) -> dict[str, Any]:
    """One stanza of ``pgbackrest info``, per repository, at time ``now`` (epoch seconds)."""
    s = _stanza(info, stanza, "pgbackrest_summary")
    try:
        now = float(now)
    except (TypeError, ValueError) as ex:
        raise AnsibleFilterError(f"pgbackrest_summary: now must be epoch seconds, got {now!r}") from ex
    status = s.get("status") or {}
    repos = []
    for repo in s.get("repo") or []:
        key = int(repo.get("key", 0))
        backups = [b for b in s.get("backup") or [] if _repo_key(b) == key]
        fulls = [b for b in backups if b.get("type") == "full" and not b.get("error")]
        last = max(backups, key=lambda b: (b.get("timestamp") or {}).get("stop", 0), default=None)
        last_full = max(fulls, key=lambda b: (b.get("timestamp") or {}).get("stop", 0), default=None)
        archives = [a for a in s.get("archive") or [] if _repo_key(a) == key]
        current = archives[-1] if archives else {}
        repo_status = repo.get("status") or {}
        full_stop = (last_full or {}).get("timestamp", {}).get("stop")
        repos.append(
            {
                "repo": key,
                "status_code": repo_status.get("code"),
                "status": repo_status.get("message"),
                "backups": len(backups),
                "full_backups": len(fulls),
                "last_backup": None if last is None else last.get("label"),
                "last_full_backup": None if last_full is None else last_full.get("label"),
                "last_full_age_s": None if full_stop is None else round(now - float(full_stop), 1),
                "wal_min": current.get("min"),
                "wal_max": current.get("max"),
                "archive_ok": bool(current.get("min") and current.get("max")),
            }
        )
    return {
        "stanza": s.get("name"),
        "status_code": status.get("code"),
        "status": status.get("message"),
        "repos": repos,
    }


def pgbackrest_problems(summary: dict[str, Any], max_full_age_s: float = DEFAULT_MAX_FULL_AGE_S) -> list[str]:
    """What is wrong with the backups; empty when every repository is fine."""
    if not isinstance(summary, dict) or "repos" not in summary:
        raise AnsibleFilterError("pgbackrest_problems: expected the output of pgbackrest_summary")
    try:
        max_age = float(max_full_age_s)
    except (TypeError, ValueError) as ex:
        raise AnsibleFilterError(f"pgbackrest_problems: max_full_age_s must be seconds, got {max_full_age_s!r}") from ex
    name = summary.get("stanza")
    problems = []
    if summary.get("status_code") not in (0, None):
        problems.append(f"stanza {name}: {summary.get('status')} (code {summary.get('status_code')})")
    if not summary["repos"]:
        problems.append(f"stanza {name}: no repository")
    for r in summary["repos"]:
        where = f"stanza {name} repo{r['repo']}"
        if r.get("status_code") not in (0, None):
            problems.append(f"{where}: {r.get('status')} (code {r.get('status_code')})")
        if not r["full_backups"]:
            problems.append(f"{where}: no full backup")
        elif r["last_full_age_s"] is not None and r["last_full_age_s"] > max_age:
            problems.append(
                f"{where}: last full backup {r['last_full_backup']} is {r['last_full_age_s'] / 3600:.1f} h old "
                f"(limit {max_age / 3600:.1f} h)"
            )
        if not r["archive_ok"]:
            problems.append(f"{where}: holds no archived WAL")
    return problems


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"pgbackrest_summary": pgbackrest_summary, "pgbackrest_problems": pgbackrest_problems}

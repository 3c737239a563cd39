# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""Verdicts over a normalised Patroni cluster (``hastack.ha.patroni_cluster_info``).

Pure functions: no I/O. Documented in the sidecar files
``patroni_problems.yml`` and ``patroni_health_table.yml``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ansible.errors import AnsibleFilterError

LEADER_ROLES = ("leader", "standby_leader")
EXPECTED_STATE = {"leader": "running"}
REPLICA_STATE = "streaming"


# --- input checks -----------------------------------------------------------


def _members(cluster: Any, filter_name: str) -> list[dict[str, Any]]:
    if not isinstance(cluster, dict) or not isinstance(cluster.get("members"), list):
        hint = (
            " (pass the registered result's 'cluster' key, e.g. patroni.cluster)"
            if isinstance(cluster, dict) and "cluster" in cluster
            else ""
        )
        raise AnsibleFilterError(
            f"{filter_name}: expected the dict returned by hastack.ha.patroni_cluster_info "
            f"under 'cluster', got {type(cluster).__name__}{hint}"
        )
    return [m for m in cluster["members"] if isinstance(m, dict)]


def _non_negative_int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or number < 0:
        raise AnsibleFilterError(f"patroni_problems: {name} must be an integer >= 0, got {value!r}")
    return number


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# --- single checks: each returns a list of problem strings ------------------


def check_paused(cluster: dict[str, Any]) -> list[str]:
    if cluster.get("paused"):
        return ["cluster is paused (maintenance mode): Patroni will not fail over"]
    return []


def check_member_count(
    members: list[dict[str, Any]], expected_members: int, expected_names: Iterable[str] | None
) -> list[str]:
    names = [str(m.get("name")) for m in members]
    if expected_names is None:
        if len(names) == expected_members:
            return []
        return [f"expected {expected_members} members, found {len(names)}: {', '.join(names)}"]
    wanted = [str(n) for n in expected_names]
    missing = [n for n in wanted if n not in names]
    unexpected = [n for n in names if n not in wanted]
    if len(names) == expected_members and not missing and not unexpected:
        return []
    details = []
    if missing:
        details.append("missing: " + ", ".join(missing))
    if unexpected:
        details.append("unexpected: " + ", ".join(unexpected))
    suffix = f" ({'; '.join(details)})" if details else ""
    return [f"expected {expected_members} members, found {len(names)}{suffix}"]


def check_leader(members: list[dict[str, Any]]) -> list[str]:
    leaders = [str(m.get("name")) for m in members if m.get("role") in LEADER_ROLES]
    if not leaders:
        return ["no leader"]
    if len(leaders) > 1:
        return [f"{len(leaders)} leaders: {', '.join(leaders)}"]
    return []


def check_states(members: list[dict[str, Any]]) -> list[str]:
    problems = []
    for member in members:
        expected = EXPECTED_STATE.get(str(member.get("role")), REPLICA_STATE)
        state = member.get("state")
        if state != expected:
            problems.append(f"{member.get('name')}: state '{state}', expected '{expected}'")
    return problems


def check_lag(members: list[dict[str, Any]], max_lag_bytes: int) -> list[str]:
    problems = []
    for member in members:
        if member.get("role") in LEADER_ROLES:
            continue
        lag = member.get("lag")
        if lag is None:
            problems.append(f"{member.get('name')}: lag unknown")
        elif int(lag) > max_lag_bytes:
            problems.append(f"{member.get('name')}: lag {int(lag)} B > {max_lag_bytes} B")
    return problems


def check_sync(cluster: dict[str, Any], expected_sync_count: int) -> list[str]:
    sync = [str(n) for n in cluster.get("sync_standbys") or []]
    if not sync and expected_sync_count > 0:
        return ["no synchronous standby (synchronous_mode on)"]
    if len(sync) < expected_sync_count:
        return [f"expected {_plural(expected_sync_count, 'synchronous standby')}, found {len(sync)}: {', '.join(sync)}"]
    return []


def check_timelines(members: list[dict[str, Any]]) -> list[str]:
    known = [(str(m.get("name")), m.get("timeline")) for m in members]
    known = [(name, tl) for name, tl in known if tl is not None]
    if len({tl for _, tl in known}) <= 1:
        return []
    listing = ", ".join(f"{name}={tl}" for name, tl in known)
    return [f"members on different timelines: {listing}"]


def check_pending_restart(members: list[dict[str, Any]]) -> list[str]:
    return [
        f"{m.get('name')}: pending restart (changed parameters need a PostgreSQL restart)"
        for m in members
        if m.get("pending_restart")
    ]


# --- filters ----------------------------------------------------------------


def patroni_problems(
    cluster: dict[str, Any],
    expected_members: int = 3,
    max_lag_bytes: int = 1048576,
    require_sync: bool = True,
    expected_sync_count: int = 1,
    single_timeline: bool = True,
    expected_names: list[str] | None = None,
    allow_pending_restart: bool = True,
) -> list[str]:
    """Human-readable problems of a Patroni cluster; empty when it is healthy."""
    members = _members(cluster, "patroni_problems")
    expected_members = _non_negative_int(expected_members, "expected_members")
    max_lag_bytes = _non_negative_int(max_lag_bytes, "max_lag_bytes")
    expected_sync_count = _non_negative_int(expected_sync_count, "expected_sync_count")
    if expected_names is not None and isinstance(expected_names, str | bytes):
        raise AnsibleFilterError(
            f"patroni_problems: expected_names must be a list of member names, got the string {expected_names!r}"
        )
    problems = check_paused(cluster)
    problems += check_member_count(members, expected_members, expected_names)
    problems += check_leader(members)
    problems += check_states(members)
    problems += check_lag(members, max_lag_bytes)
    if require_sync:
        problems += check_sync(cluster, expected_sync_count)
    if single_timeline:
        problems += check_timelines(members)
    if not allow_pending_restart:
        problems += check_pending_restart(members)
    return problems


def _lag_cell(member: dict[str, Any]) -> str:
    if member.get("role") in LEADER_ROLES:
        return "-"
    lag = member.get("lag")
    return "unknown" if lag is None else f"{int(lag)} B"


def patroni_health_table(cluster: dict[str, Any]) -> list[str]:
    """Aligned text lines, a header and one row per member: name, role, state, timeline, lag."""
    members = _members(cluster, "patroni_health_table")
    rows = [["MEMBER", "ROLE", "STATE", "TL", "LAG"]]
    for m in members:
        timeline = m.get("timeline")
        rows.append(
            [
                str(m.get("name")),
                str(m.get("role")),
                str(m.get("state")),
                "-" if timeline is None else str(timeline),
                _lag_cell(m),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


class FilterModule:
    """Patroni health verdicts."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "patroni_problems": patroni_problems,
            "patroni_health_table": patroni_health_table,
        }

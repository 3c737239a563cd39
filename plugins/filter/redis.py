# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""Verdicts over what ``hastack.ha.redis_sentinel_info`` returns.

Pure functions: no I/O. Documented in the sidecar files
``redis_problems.yml`` and ``redis_health_table.yml``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError

# Flags a healthy master / replica / sentinel carries in Sentinel's tables;
# anything else (s_down, o_down, disconnected, failover_in_progress,
# promoted, reconf_*) is worth a line. "master_down" on a peer sentinel only
# records that the peer voted the master down (it lingers after a failover).
HEALTHY_FLAGS = {"master": {"master"}, "slave": {"slave"}, "sentinel": {"sentinel", "master_down"}}


# --- input checks -----------------------------------------------------------


def _info(info: Any, filter_name: str) -> dict[str, Any]:
    if (
        not isinstance(info, dict)
        or not isinstance(info.get("sentinels"), list)
        or not isinstance(info.get("redis"), list)
    ):
        hint = (
            " (pass the registered result's 'info' key, e.g. redis_state.info)"
            if isinstance(info, dict) and "info" in info
            else ""
        )
        raise AnsibleFilterError(
            f"{filter_name}: expected the dict returned by hastack.ha.redis_sentinel_info "
            f"under 'info', got {type(info).__name__}{hint}"
        )
    return info


def _non_negative_int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or number < 0:
        raise AnsibleFilterError(f"redis_problems: {name} must be an integer >= 0, got {value!r}")
    return number


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _who(member: dict[str, Any]) -> str:
    name, address = member.get("name"), member.get("address")
    return f"{name} ({address})" if name and name != address else str(address)


def _odd_flags(flags: list[str] | None, kind: str) -> list[str]:
    return [f for f in flags or [] if f not in HEALTHY_FLAGS[kind]]


def _labels(members: list[dict[str, Any]]) -> dict[str, str]:
    """address -> 'name (address)', to name members that sentinels report by address."""
    return {str(m.get("address")): _who(m) for m in members}


def _merge(observations: list[tuple[dict[str, Any], str]]) -> list[str]:
    """One line per distinct observation, naming every sentinel that made it."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for sentinel, text in observations:
        grouped.setdefault(text, []).append(sentinel)
    return [
        f"sentinel {_who(members[0])}: {text}"
        if len(members) == 1
        else f"sentinels {', '.join(_who(m) for m in members)}: {text}"
        for text, members in grouped.items()
    ]


# --- sentinel checks: each returns a list of problem strings ----------------


def check_sentinel_count(sentinels: list[dict[str, Any]], expected: int) -> list[str]:
    if len(sentinels) == expected:
        return []
    return [f"expected {_plural(expected, 'sentinel')}, {len(sentinels)} given to redis_sentinel_info"]


def check_sentinels_answer(sentinels: list[dict[str, Any]], master_name: str) -> list[str]:
    observations = []
    for s in sentinels:
        if not s.get("reachable"):
            observations.append((s, f"unreachable: {s.get('error')}"))
        elif not s.get("monitors"):
            observations.append((s, s.get("error") or f"does not monitor {master_name!r}"))
    problems = _merge(observations)
    if sentinels and not any(s.get("monitors") for s in sentinels):
        problems.append(f"no sentinel answers for master {master_name!r}: nobody can fail over")
    return problems


def check_master_agreement(sentinels: list[dict[str, Any]], labels: dict[str, str]) -> list[str]:
    by_master: dict[str, list[str]] = {}
    for s in sentinels:
        address = (s.get("master") or {}).get("address")
        if address:
            by_master.setdefault(address, []).append(str(s.get("name")))
    if len(by_master) <= 1:
        return []
    listing = "; ".join(
        f"{', '.join(names)} name {labels.get(address, address)}" for address, names in sorted(by_master.items())
    )
    return [f"sentinels disagree on the master: {listing}"]


def check_sentinel_state(sentinels: list[dict[str, Any]], labels: dict[str, str]) -> list[str]:
    observations = []
    for s in sentinels:
        if s.get("tilt"):
            observations.append((s, "in TILT mode (it neither detects failures nor fails over)"))
        master = s.get("master")
        if not master:
            continue
        odd = _odd_flags(master.get("flags"), "master")
        address = str(master.get("address"))
        if odd:
            observations.append((s, f"master {labels.get(address, address)} flagged {','.join(odd)}"))
        quorum = s.get("ckquorum") or {}
        if not quorum.get("ok"):
            observations.append((s, f"CKQUORUM failed: {quorum.get('message')}"))
    return _merge(observations)


def check_sentinel_peers(sentinels: list[dict[str, Any]], expected_sentinels: int, labels: dict[str, str]) -> list[str]:
    observations = []
    want_others = max(expected_sentinels - 1, 0)
    for s in sentinels:
        if not s.get("master"):
            continue
        peers = s.get("sentinels") or []
        healthy = [p for p in peers if not _odd_flags(p.get("flags"), "sentinel")]
        if len(healthy) == want_others:
            continue
        details = [
            f"{labels.get(str(p.get('address')), p.get('address'))}: {','.join(_odd_flags(p.get('flags'), 'sentinel'))}"
            for p in peers
            if _odd_flags(p.get("flags"), "sentinel")
        ]
        suffix = f" ({'; '.join(details)})" if details else ""
        observations.append(
            (s, f"sees {_plural(len(healthy), 'healthy other sentinel')}, expected {want_others}{suffix}")
        )
    return _merge(observations)


def check_sentinel_replicas(
    sentinels: list[dict[str, Any]], expected_replicas: int, labels: dict[str, str]
) -> list[str]:
    observations = []
    for s in sentinels:
        master = s.get("master")
        if not master:
            continue
        replicas = s.get("replicas") or []
        healthy = [
            r for r in replicas if not _odd_flags(r.get("flags"), "slave") and r.get("master_link_status") == "ok"
        ]
        if len(healthy) == expected_replicas:
            continue
        details = []
        for r in replicas:
            if r in healthy:
                continue
            reasons = _odd_flags(r.get("flags"), "slave")
            if r.get("master_link_status") != "ok":
                reasons.append(f"link {r.get('master_link_status')}")
            details.append(f"{labels.get(str(r.get('address')), r.get('address'))}: {', '.join(reasons)}")
        suffix = f" ({'; '.join(details)})" if details else ""
        address = str(master.get("address"))
        observations.append(
            (
                s,
                f"sees {_plural(len(healthy), 'healthy replica')} of {labels.get(address, address)}, "
                f"expected {expected_replicas}{suffix}",
            )
        )
    return _merge(observations)


# --- Redis checks -------------------------------------------------------------


def check_redis_count(redis: list[dict[str, Any]], expected: int) -> list[str]:
    if len(redis) == expected:
        return []
    return [f"expected {expected} Redis servers (1 master + replicas), {len(redis)} given to redis_sentinel_info"]


def check_redis_answer(redis: list[dict[str, Any]], master: str | None) -> list[str]:
    problems = []
    for r in redis:
        if r.get("reachable"):
            continue
        if master and r.get("address") == master:
            problems.append(f"master {_who(r)} (named by the sentinels) is unreachable: {r.get('error')}")
        else:
            problems.append(f"redis {_who(r)}: unreachable: {r.get('error')}")
    return problems


def check_masters(redis: list[dict[str, Any]], master: str | None) -> list[str]:
    reachable = [r for r in redis if r.get("reachable")]
    masters = [r for r in reachable if r.get("role") == "master"]
    unreachable = {r.get("address") for r in redis if not r.get("reachable")}
    problems = []
    if len(masters) > 1:
        problems.append(f"{len(masters)} masters: {', '.join(_who(m) for m in masters)}")
    elif reachable and not masters and not (master and master in unreachable):
        # (an unreachable master named by the sentinels is reported once, above)
        problems.append("no Redis reports role master")
    if master and master not in {r.get("address") for r in redis}:
        problems.append(f"the sentinels name {master} master, which is none of the Redis servers given")
    for r in reachable:
        if master and r.get("address") == master and r.get("role") != "master":
            problems.append(f"{_who(r)}: the sentinels name it master but its role is {r.get('role')}")
    return problems


def check_replicas(redis: list[dict[str, Any]], master: str | None, labels: dict[str, str]) -> list[str]:
    problems = []
    for r in redis:
        if not r.get("reachable") or r.get("role") == "master":
            continue
        if r.get("role") != "slave":
            problems.append(f"redis {_who(r)}: role {r.get('role')}, expected master or replica")
            continue
        if r.get("master_link_status") != "up":
            problems.append(
                f"replica {_who(r)}: master_link_status {r.get('master_link_status')} "
                f"(link to {labels.get(str(r.get('master_address')), r.get('master_address'))} "
                f"{r.get('link_state')})"
            )
        if master and r.get("master_address") != master:
            problems.append(
                f"replica {_who(r)}: replicates {labels.get(str(r.get('master_address')), r.get('master_address'))}, "
                f"but the sentinels name {labels.get(master, master)}"
            )
    return problems


def check_master_replicas(redis: list[dict[str, Any]], expected_replicas: int, labels: dict[str, str]) -> list[str]:
    problems = []
    for r in redis:
        if not r.get("reachable") or r.get("role") != "master":
            continue
        online = [x for x in r.get("replicas") or [] if x.get("state") == "online"]
        if len(online) != expected_replicas:
            names = ", ".join(labels.get(str(x.get("address")), str(x.get("address"))) for x in online)
            problems.append(
                f"master {_who(r)}: {_plural(len(online), 'replica')} online, expected {expected_replicas}"
                + (f" ({names})" if names else "")
            )
    return problems


# --- filters ----------------------------------------------------------------


def redis_problems(
    info: dict[str, Any],
    expected_replicas: int = 2,
    expected_sentinels: int = 3,
) -> list[str]:
    """Human-readable problems of a Redis + Sentinel deployment; empty when it is healthy."""
    info = _info(info, "redis_problems")
    expected_replicas = _non_negative_int(expected_replicas, "expected_replicas")
    expected_sentinels = _non_negative_int(expected_sentinels, "expected_sentinels")
    sentinels = [s for s in info["sentinels"] if isinstance(s, dict)]
    redis = [r for r in info["redis"] if isinstance(r, dict)]
    labels = _labels(redis)
    sentinel_labels = _labels(sentinels)
    master = info.get("master")
    master_name = str(info.get("master_name"))

    problems = check_sentinel_count(sentinels, expected_sentinels)
    problems += check_sentinels_answer(sentinels, master_name)
    problems += check_master_agreement(sentinels, labels)
    problems += check_sentinel_state(sentinels, labels)
    problems += check_sentinel_peers(sentinels, expected_sentinels, sentinel_labels)
    problems += check_sentinel_replicas(sentinels, expected_replicas, labels)
    problems += check_redis_count(redis, expected_replicas + 1)
    problems += check_redis_answer(redis, master)
    problems += check_masters(redis, master)
    problems += check_replicas(redis, master, labels)
    problems += check_master_replicas(redis, expected_replicas, labels)
    return problems


# Master flags that mean Sentinel is in the middle of a failover (or about to
# start one): the role waits before it trusts the master a sentinel names.
UNSETTLED_MASTER_FLAGS = {"s_down", "o_down", "failover_in_progress", "promoted", "disconnected"}


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = str(address).rpartition(":")
    try:
        return host, int(port)
    except ValueError:
        raise AnsibleFilterError(f"redis_current_master: {address!r} is not host:port") from None


def _choice(address: str | None, source: str, settled: bool, reason: str) -> dict[str, Any]:
    host, port = _split_address(address) if address else (None, None)
    return {"address": address, "host": host, "port": port, "source": source, "settled": settled, "reason": reason}


def redis_current_master(info: dict[str, Any], initial: str) -> dict[str, Any]:
    """The master the deployment has now, and whether it is safe to act on it.

    The sentinels' answer wins; before any sentinel monitors the master, the
    master the replicas follow; before any replica exists, ``initial``.
    """
    info = _info(info, "redis_current_master")
    _split_address(initial)
    monitoring = [s for s in info["sentinels"] if isinstance(s, dict) and s.get("master")]
    redis = [r for r in info["redis"] if isinstance(r, dict) and r.get("reachable")]
    if monitoring:
        named = sorted({str(s["master"].get("address")) for s in monitoring})
        if len(named) > 1:
            return _choice(None, "sentinels", False, f"sentinels disagree on the master: {', '.join(named)}")
        busy = sorted({f for s in monitoring for f in s["master"].get("flags") or [] if f in UNSETTLED_MASTER_FLAGS})
        if busy:
            return _choice(named[0], "sentinels", False, f"master {named[0]} flagged {','.join(busy)} (failover?)")
        for r in redis:
            if r.get("address") == named[0] and r.get("role") != "master":
                return _choice(
                    named[0],
                    "sentinels",
                    False,
                    f"the sentinels name {named[0]} master but its role is {r.get('role')}",
                )
        return _choice(named[0], "sentinels", True, f"named by {_plural(len(monitoring), 'sentinel')}")
    followed = sorted({str(r.get("master_address")) for r in redis if r.get("role") == "slave"})
    if len(followed) > 1:
        return _choice(None, "replicas", False, f"no sentinel answers and replicas follow {', '.join(followed)}")
    if followed:
        return _choice(followed[0], "replicas", True, "no sentinel answers; the master the replicas follow")
    return _choice(initial, "initial", True, "no sentinel and no replica yet: the initial master")


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def redis_health_table(info: dict[str, Any]) -> list[str]:
    """Aligned text lines: one table of the Redis servers, a blank line, one of the sentinels."""
    info = _info(info, "redis_health_table")
    redis_rows = [["REDIS", "ADDRESS", "ROLE", "LINK", "MASTER", "REPLICAS", "OFFSET"]]
    labels = {str(r.get("address")): str(r.get("name")) for r in info["redis"] if isinstance(r, dict)}
    for r in info["redis"]:
        if not r.get("reachable"):
            redis_rows.append([_cell(r.get("name")), _cell(r.get("address")), "unreachable", "-", "-", "-", "-"])
            continue
        is_master = r.get("role") == "master"
        online = [x for x in r.get("replicas") or [] if x.get("state") == "online"]
        redis_rows.append(
            [
                _cell(r.get("name")),
                _cell(r.get("address")),
                _cell(r.get("role")),
                "-" if is_master else _cell(r.get("master_link_status")),
                "-" if is_master else _cell(labels.get(str(r.get("master_address")), r.get("master_address"))),
                str(len(online)) if is_master else "-",
                _cell(r.get("offset")),
            ]
        )
    sentinel_rows = [["SENTINEL", "ADDRESS", "MASTER", "FLAGS", "REPLICAS", "SENTINELS", "CKQUORUM"]]
    for s in info["sentinels"]:
        master = s.get("master")
        if not s.get("reachable") or not master:
            state = "unreachable" if not s.get("reachable") else "no master"
            sentinel_rows.append([_cell(s.get("name")), _cell(s.get("address")), state, "-", "-", "-", "-"])
            continue
        healthy_replicas = [
            r
            for r in s.get("replicas") or []
            if not _odd_flags(r.get("flags"), "slave") and r.get("master_link_status") == "ok"
        ]
        healthy_peers = [p for p in s.get("sentinels") or [] if not _odd_flags(p.get("flags"), "sentinel")]
        quorum = s.get("ckquorum") or {}
        flags = ",".join(master.get("flags") or [])
        sentinel_rows.append(
            [
                _cell(s.get("name")),
                _cell(s.get("address")),
                _cell(labels.get(str(master.get("address")), master.get("address"))),
                flags + (",TILT" if s.get("tilt") else ""),
                f"{len(healthy_replicas)}/{len(s.get('replicas') or [])}",
                f"{len(healthy_peers) + 1}/{len(s.get('sentinels') or []) + 1}",
                "OK" if quorum.get("ok") else str(quorum.get("message") or "-").split(" ", 1)[0],
            ]
        )
    return [*_table(redis_rows), "", *_table(sentinel_rows)]


class FilterModule:
    """Redis + Sentinel health verdicts."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "redis_problems": redis_problems,
            "redis_health_table": redis_health_table,
            "redis_current_master": redis_current_master,
        }

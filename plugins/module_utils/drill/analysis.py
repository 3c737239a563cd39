"""What a drill's recording says: pure functions over plain data.

Inputs are the lists of dicts the recorder writes (see ``recorder.py``):

* write attempts: ``{id, t_start, t_end, outcome, server, timeline, error, phase}``
* samples per member: ``{t_start, t_end, state, timeline, error}``
* events: ``{t, event, target, ...}``
* the ids read back from the final primary.

Times are seconds since the start of the recording (monotonic). Every
function returns JSON-ready values; :func:`analyse` puts them together.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from itertools import pairwise
from typing import Any

Attempt = Mapping[str, Any]
SampleRow = Mapping[str, Any]

ID_LIST_LIMIT = 1000  # ids listed in the metrics; counts are always complete
ERROR_KEY_LIMIT = 160


def _acks(attempts: Iterable[Attempt]) -> list[Attempt]:
    return sorted((a for a in attempts if a["outcome"] == "ack"), key=lambda a: a["t_end"])


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# -- write availability ----------------------------------------------------
def write_gap(attempts: Sequence[Attempt], t_stop: float | None = None) -> dict[str, Any]:
    """The longest time without an acknowledgement.

    Measured between the acknowledgement instants (``t_end``) of consecutive
    acknowledged writes. If the writer stopped (``t_stop``) longer after its last
    acknowledgement than any gap inside the run, that open-ended stretch is the
    gap (``open_ended: true``): an outage that never ended is still an outage.
    """
    acks = _acks(attempts)
    if not acks:
        return {
            "seconds": None if t_stop is None else _r(t_stop),
            "from_t": None,
            "to_t": None,
            "from_id": None,
            "to_id": None,
            "open_ended": True,
        }
    best = {"seconds": 0.0, "from_t": acks[0]["t_end"], "to_t": acks[0]["t_end"]}
    best.update(from_id=acks[0]["id"], to_id=acks[0]["id"], open_ended=False)
    for prev, cur in pairwise(acks):
        gap = cur["t_end"] - prev["t_end"]
        if gap > best["seconds"]:
            best = {
                "seconds": gap,
                "from_t": prev["t_end"],
                "to_t": cur["t_end"],
                "from_id": prev["id"],
                "to_id": cur["id"],
                "open_ended": False,
            }
    if t_stop is not None and t_stop - acks[-1]["t_end"] > best["seconds"]:
        best = {
            "seconds": t_stop - acks[-1]["t_end"],
            "from_t": acks[-1]["t_end"],
            "to_t": t_stop,
            "from_id": acks[-1]["id"],
            "to_id": None,
            "open_ended": True,
        }
    for key in ("seconds", "from_t", "to_t"):
        best[key] = _r(best[key])
    return best


def outcome_counts(attempts: Sequence[Attempt]) -> dict[str, int]:
    counts = Counter(a["outcome"] for a in attempts)
    return {
        "attempted": len(attempts),
        "ack": counts.get("ack", 0),
        "error": counts.get("error", 0),
        "unknown": counts.get("unknown", 0),
    }


def error_summary(attempts: Sequence[Attempt]) -> dict[str, Any]:
    """Errors and unknowns grouped by message (first ``ERROR_KEY_LIMIT`` chars)."""
    by_message: Counter[str] = Counter()
    by_phase: Counter[str] = Counter()
    for a in attempts:
        if a["outcome"] == "ack":
            continue
        by_message[f"{a['outcome']}: {(a.get('error') or '?')[:ERROR_KEY_LIMIT]}"] += 1
        by_phase[f"{a['outcome']}/{a.get('phase') or 'query'}"] += 1
    return {
        "total": sum(by_message.values()),
        "by_phase": dict(by_phase),
        "by_message": dict(by_message.most_common()),
    }


# -- durability --------------------------------------------------------------
def lost_writes(attempts: Sequence[Attempt], present_ids: Iterable[int] | None) -> dict[str, Any]:
    """Acknowledged ids missing from the final primary, and what became of the others.

    ``present_ids`` is every id of the run found on the final primary; ``None``
    means the read-back failed, so loss is not measured (``lost: None``).
    ``unknown_committed`` counts unknown writes that did commit (expected: a
    timed-out commit usually completes); ``error_committed`` must be 0, or an
    ``error`` was not a certain failure.
    """
    unknown_ids = sorted(a["id"] for a in attempts if a["outcome"] == "unknown")
    if present_ids is None:
        return {
            "lost": None,
            "lost_ids": [],
            "unknown": len(unknown_ids),
            "unknown_ids": unknown_ids[:ID_LIST_LIMIT],
            "unknown_committed": None,
            "error_committed": None,
        }
    present = set(present_ids)
    lost = sorted(a["id"] for a in attempts if a["outcome"] == "ack" and a["id"] not in present)
    error_committed = sorted(a["id"] for a in attempts if a["outcome"] == "error" and a["id"] in present)
    return {
        "lost": len(lost),
        "lost_ids": lost[:ID_LIST_LIMIT],
        "unknown": len(unknown_ids),
        "unknown_ids": unknown_ids[:ID_LIST_LIMIT],
        "unknown_committed": sum(1 for i in unknown_ids if i in present),
        "error_committed": len(error_committed),
        "error_committed_ids": error_committed[:ID_LIST_LIMIT],
    }


# -- split brain -------------------------------------------------------------
def writable_windows(samples: Sequence[SampleRow], min_consecutive: int = 2) -> list[list[float]]:
    """Stretches in which a member certainly accepted writes.

    A run of at least ``min_consecutive`` consecutive ``primary`` samples gives
    the window ``[first.t_end, last.t_start]``: each answer was produced inside
    its sample's interval, so the member was writable at least from the end of
    the first to the start of the last. A lone stale ``primary`` (a thawed old
    leader answering once before Patroni demotes it) does not count.
    """
    windows: list[list[float]] = []
    run: list[SampleRow] = []
    for s in [*samples, None]:
        if s is not None and s["state"] == "primary":
            run.append(s)
            continue
        if len(run) >= min_consecutive:
            windows.append([run[0]["t_end"], run[-1]["t_start"]])
        run = []
    return windows


def split_brain_from_samples(
    samples: Mapping[str, Sequence[SampleRow]], min_consecutive: int = 2
) -> list[dict[str, Any]]:
    """Method (a): two members each writable over consecutive samples, at once."""
    windows = {m: writable_windows(rows, min_consecutive) for m, rows in samples.items()}
    names = sorted(windows)
    episodes = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for wa in windows[a]:
                for wb in windows[b]:
                    start, end = max(wa[0], wb[0]), min(wa[1], wb[1])
                    if start < end:
                        episodes.append(
                            {
                                "method": "samples",
                                "members": [a, b],
                                "from_t": _r(start),
                                "to_t": _r(end),
                                "seconds": _r(end - start),
                            }
                        )
    return sorted(episodes, key=lambda e: e["from_t"])


def ack_runs(attempts: Sequence[Attempt]) -> list[dict[str, Any]]:
    """Consecutive acknowledgements from the same server, in time order."""
    runs: list[dict[str, Any]] = []
    for a in _acks(attempts):
        if runs and runs[-1]["server"] == a["server"]:
            run = runs[-1]
            run["last_t"] = a["t_end"]
            run["last_id"] = a["id"]
            run["acks"] += 1
        else:
            run = {
                "server": a["server"],
                "first_t": a["t_end"],
                "last_t": a["t_end"],
                "first_id": a["id"],
                "last_id": a["id"],
                "acks": 1,
                "timelines": set(),
            }
            runs.append(run)
        if a.get("timeline") is not None:
            run["timelines"].add(a["timeline"])
    return runs


def split_brain_from_acks(attempts: Sequence[Attempt]) -> list[dict[str, Any]]:
    """Method (b): acknowledgements from two servers interleaving in time.

    ``interleave``: acks from A, then B, then A again. A legitimate flip-back
    (A fails over to B, later B fails over to A) promotes A anew, so its later
    acks carry a newer timeline than B's: when every timeline is known and
    strictly increases across the runs, it is not flagged.
    ``timeline_regression``: a server acknowledging on an older timeline than
    an earlier acknowledgement from another server (an old primary still
    writable after a promotion), even without a return to the first server.
    """
    runs = ack_runs(attempts)
    episodes: list[dict[str, Any]] = []
    last_index: dict[str | None, int] = {}
    for k, run in enumerate(runs):
        j = last_index.get(run["server"])
        if j is not None and j < k - 1:
            chain = runs[j : k + 1]
            if not _timelines_increase(chain):
                episodes.append(
                    {
                        "method": "acks",
                        "kind": "interleave",
                        "servers": [run["server"], *sorted({r["server"] for r in runs[j + 1 : k]})],
                        "from_t": _r(runs[j]["last_t"]),
                        "to_t": _r(run["first_t"]),
                        "ids": [runs[j]["last_id"], run["first_id"]],
                    }
                )
        if k > 0:
            prev = runs[k - 1]
            if prev["timelines"] and run["timelines"] and min(run["timelines"]) < max(prev["timelines"]):
                episodes.append(
                    {
                        "method": "acks",
                        "kind": "timeline_regression",
                        "servers": [prev["server"], run["server"]],
                        "from_t": _r(prev["last_t"]),
                        "to_t": _r(run["first_t"]),
                        "timelines": [max(prev["timelines"]), min(run["timelines"])],
                    }
                )
        last_index[run["server"]] = k
    return episodes


def _timelines_increase(chain: Sequence[Mapping[str, Any]]) -> bool:
    previous = None
    for run in chain:
        if not run["timelines"]:
            return False
        if previous is not None and min(run["timelines"]) <= previous:
            return False
        previous = max(run["timelines"])
    return True


# -- leaders, members, events ------------------------------------------------
def server_names(members: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Server address -> member name, from the recorder's member list (first one wins)."""
    names: dict[str, str] = {}
    for m in members:
        if m.get("host"):
            names.setdefault(str(m["host"]), str(m["name"]))
    return names


def servers(attempts: Sequence[Attempt], names: Mapping[str, str] | None = None) -> list[dict]:
    """First/last acknowledgement per server, in order of first acknowledgement."""
    names = names or {}
    seen: dict[str | None, dict[str, Any]] = {}
    for a in _acks(attempts):
        entry = seen.setdefault(
            a["server"],
            {
                "server": a["server"],
                "member": names.get(a["server"] or "", a["server"]),
                "first_ack_t": _r(a["t_end"]),
                "acks": 0,
                "timelines": [],
            },
        )
        entry["last_ack_t"] = _r(a["t_end"])
        entry["acks"] += 1
        if a.get("timeline") is not None and a["timeline"] not in entry["timelines"]:
            entry["timelines"].append(a["timeline"])
    return list(seen.values())


def leader_changes(attempts: Sequence[Attempt], names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Each switch of the acknowledging server: last ack of the old, first of the new."""
    names = names or {}
    runs = ack_runs(attempts)
    changes = []
    for prev, cur in pairwise(runs):
        changes.append(
            {
                "from": names.get(prev["server"] or "", prev["server"]),
                "to": names.get(cur["server"] or "", cur["server"]),
                "last_ack_old_t": _r(prev["last_t"]),
                "first_ack_new_t": _r(cur["first_t"]),
                "gap_s": _r(cur["first_t"] - prev["last_t"]),
            }
        )
    return changes


def member_windows(samples: Mapping[str, Sequence[SampleRow]]) -> dict[str, list[dict]]:
    """Run-length view of each member's sampled state (for the timeline lanes)."""
    out: dict[str, list[dict]] = {}
    for member, rows in samples.items():
        lane: list[dict] = []
        for s in rows:
            if lane and lane[-1]["state"] == s["state"]:
                lane[-1]["to_t"] = _r(s["t_end"])
                lane[-1]["samples"] += 1
                if s.get("timeline") is not None:
                    lane[-1]["timeline"] = s["timeline"]
            else:
                lane.append(
                    {
                        "state": s["state"],
                        "from_t": _r(s["t_start"]),
                        "to_t": _r(s["t_end"]),
                        "samples": 1,
                        "timeline": s.get("timeline"),
                    }
                )
        out[member] = lane
    return out


def disruption_windows(events: Sequence[Mapping[str, Any]], t_end: float) -> list[dict]:
    """Pair ``disrupt_start`` with the next ``disrupt_end`` of the same target."""
    windows: list[dict[str, Any]] = []
    for ev in sorted((e for e in events if e.get("t") is not None), key=lambda e: e["t"]):
        if ev.get("event") == "disrupt_start":
            windows.append(
                {
                    "target": ev.get("target"),
                    "kind": ev.get("kind"),
                    "start_t": _r(ev["t"]),
                    "end_t": None,
                }
            )
        elif ev.get("event") == "disrupt_end":
            for w in reversed(windows):
                if w["end_t"] is None and w["target"] == ev.get("target"):
                    w["end_t"] = _r(ev["t"])
                    break
    for w in windows:
        w["open"] = w["end_t"] is None
        if w["open"]:
            w["end_t"] = _r(t_end)
    return windows


def answering_again(
    samples: Mapping[str, Sequence[SampleRow]], disruptions: Sequence[Mapping[str, Any]]
) -> dict[str, float | None]:
    """Seconds from the end of a member's disruption to its first answered sample.

    A sampler's view only ("PostgreSQL answers again"); whether the member
    streams again is for the playbook to measure (``context.rejoin_s``).
    """
    out: dict[str, float | None] = {}
    for w in disruptions:
        target = w.get("target")
        if target not in samples or w.get("open"):
            continue
        first = next(
            (s for s in samples[target] if s["t_start"] >= w["end_t"] and s["state"] in ("primary", "replica")),
            None,
        )
        out[target] = None if first is None else _r(first["t_end"] - w["end_t"])
    return out


# -- latency -------------------------------------------------------------------
def _latency_stats(acks: Sequence[Attempt]) -> dict[str, Any]:
    """Count, median, p99 and max of send-to-acknowledgement times, in ms (nearest rank)."""
    ms = sorted((a["t_end"] - a["t_start"]) * 1000 for a in acks)
    if not ms:
        return {"acks": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}

    def rank(q: float) -> float:
        return ms[max(0, math.ceil(q * len(ms)) - 1)]

    return {"acks": len(ms), "p50_ms": _r(rank(0.5), 1), "p99_ms": _r(rank(0.99), 1), "max_ms": _r(ms[-1], 1)}


def commit_latency(attempts: Sequence[Attempt], windows: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """How long acknowledged writes took: all of them, and those sent inside a disruption window."""
    acks = _acks(attempts)
    inside = [a for a in acks if any(w["start_t"] <= a["t_start"] <= w["end_t"] for w in windows)]
    return {"all": _latency_stats(acks), "disrupted": _latency_stats(inside)}


# -- a second writer -----------------------------------------------------------
def other_writer(
    raw: Mapping[str, Any],
    anchor_wall: float | None,
    names: Mapping[str, str],
    old_server: str | None,
    takeover_t: float | None,
) -> dict[str, Any]:
    """What a second writer saw (one inside a cut-off zone), on the main recording's time base.

    ``raw`` is that writer's own recording. Its times are moved by the
    difference of the two wall-clock anchors. ``late_old_leader_acks`` counts
    writes the old primary (``old_server``) acknowledged although they were
    sent after another server's first acknowledgement (``takeover_t``, from
    the main writer): two primaries taking writes at once, as a client on
    the old primary's side sees it.
    """
    own_wall = raw.get("anchor", {}).get("wall")
    offset = 0.0 if own_wall is None or anchor_wall is None else own_wall - anchor_wall
    attempts = [
        {**a, "t_start": a["t_start"] + offset, "t_end": a["t_end"] + offset} for a in raw["writer"]["attempts"]
    ]
    readback = raw.get("readback", {})
    loss = lost_writes(attempts, readback.get("ids") if readback.get("ok") else None)
    t_stop = raw["writer"].get("t_stop")
    late = []
    if takeover_t is not None and old_server is not None:
        late = [a["id"] for a in _acks(attempts) if a["server"] == old_server and a["t_start"] > takeover_t]
    return {
        "run_id": raw.get("run_id"),
        "offset_s": _r(offset),
        "writes": outcome_counts(attempts),
        "write_gap_s": write_gap(attempts, None if t_stop is None else t_stop + offset)["seconds"],
        "lost_writes": loss["lost"],
        "lost_ids": loss["lost_ids"],
        "unknown_writes": loss["unknown"],
        "readback_ok": bool(readback.get("ok")),
        "readback_error": readback.get("error"),
        "servers": servers(attempts, names),
        "late_old_leader_acks": len(late),
        "late_old_leader_ids": late[:ID_LIST_LIMIT],
        "errors": error_summary(attempts),
    }


def _sum_or_none(values: Iterable[int | None]) -> int | None:
    values = list(values)
    return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]


# -- everything ----------------------------------------------------------------
def analyse(
    raw: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
    extra_events: Sequence[Mapping[str, Any]] = (),
    writers: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """All metrics of one recording (the recorder's raw JSON) as a plain dict.

    ``writers``: recordings of other writers (name -> their raw JSON), for
    example one inside the cut-off zone; see :func:`other_writer`.
    """
    context = context or {}
    attempts = raw["writer"]["attempts"]
    samples = raw.get("samples", {})
    names = server_names(raw.get("config", {}).get("members", []))
    t_stop = raw["writer"].get("t_stop")
    t_end = raw.get("stop", {}).get("t", t_stop) or 0.0
    anchor_wall = raw.get("anchor", {}).get("wall")
    events = [*raw.get("events", []), *normalise_events(extra_events, anchor_wall)]

    readback = raw.get("readback", {})
    present = readback.get("ids") if readback.get("ok") else None
    loss = lost_writes(attempts, present)
    gap = write_gap(attempts, t_stop)
    sb_samples = split_brain_from_samples(samples)
    sb_acks = split_brain_from_acks(attempts)
    srv = servers(attempts, names)
    disruptions = disruption_windows(events, t_end)
    rejoin = context.get("rejoin_s")
    changes = leader_changes(attempts, names)
    old_server = srv[0]["server"] if srv else None
    others = {
        name: other_writer(other, anchor_wall, names, old_server, srv[1]["first_ack_t"] if len(srv) > 1 else None)
        for name, other in (writers or {}).items()
    }
    late_acks = sum(o["late_old_leader_acks"] for o in others.values())

    return {
        "run_id": raw.get("run_id"),
        "duration_s": _r(t_end),
        "writes": {
            **outcome_counts(attempts),
            "unknown_committed": loss["unknown_committed"],
            "error_committed": loss["error_committed"],
        },
        "write_gap_s": gap["seconds"],
        "write_gap": gap,
        "lost_writes": loss["lost"],
        "lost_ids": loss["lost_ids"],
        "readback": {
            "ok": bool(readback.get("ok")),
            "server": readback.get("server"),
            "member": names.get(readback.get("server") or "", readback.get("server")),
            "ids": len(readback.get("ids") or []),
            "error": readback.get("error"),
        },
        "unknown_writes": loss["unknown"],
        "unknown_ids": loss["unknown_ids"],
        "errors": error_summary(attempts),
        "split_brain": bool(sb_samples or sb_acks or late_acks),
        "split_brain_samples": sb_samples,
        "split_brain_acks": sb_acks,
        "servers": srv,
        "leader_changes": changes,
        "leader_change_count": len(changes),
        "commit_latency": commit_latency(attempts, disruptions),
        "other_writers": others,
        "other_lost_writes": _sum_or_none(o["lost_writes"] for o in others.values()) if others else None,
        "other_late_old_leader_acks": late_acks,
        "old_leader": srv[0]["member"] if srv else None,
        "new_leader": srv[-1]["member"] if srv else None,
        "member_windows": member_windows(samples),
        "disruptions": disruptions,
        "events": sorted((dict(e) for e in events if e.get("t") is not None), key=lambda e: e["t"]),
        "answering_again_s": answering_again(samples, disruptions),
        "rejoin_s": _seconds(rejoin, "context.rejoin_s"),
    }


def _seconds(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None


def normalise_events(events: Iterable[Mapping[str, Any]], anchor_wall: float | None) -> list[dict[str, Any]]:
    """Give each event a relative ``t`` from its ``t_wall`` (epoch seconds or ISO 8601)."""
    out = []
    for ev in events:
        item = dict(ev)
        wall = parse_wall(item.get("t_wall"))
        if wall is not None:
            item["t_wall"] = wall
            if anchor_wall is not None:
                item["t"] = round(wall - anchor_wall, 6)
        out.append(item)
    return out


def parse_wall(value: Any) -> float | None:
    """Epoch seconds from a number, a numeric string or an ISO 8601 timestamp.

    A timestamp without a zone is local time (what Ansible's ``now()`` gives).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.timestamp()  # naive = local time, like Ansible's now()

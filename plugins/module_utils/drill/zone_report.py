"""The zone-outage drill's report: every service of the stack on one timeline.

The zone drill (playbooks/drill_zone.yml) runs the PostgreSQL and the Redis
recorders and the app load generator at once, breaks every node of one zone,
and hands their recordings to :func:`build_zone_report` together with what the
playbook measured (when each service was healthy again on the other zones,
when each rejoined after the heal) and what the lab's alert receiver got.

* PostgreSQL and Redis: each recording is judged by the drill engine's own
  :func:`report.build_report` with that service's limits (write gap, lost
  writes, split brain, rejoin).
* The app: every request the load generator sent. A failure (5xx or no
  answer) is allowed only inside the failover window, from the disruption
  until the stack is healthy again plus a settle time (breaker recovery,
  HAProxy rise); none before, none after. Failed reads are counted against
  every read (standbys serve reads while there is no primary), and failed
  writes against PostgreSQL's write gap, widened by a grace after its end.
* The stack: seconds from the disruption until every surviving service is
  healthy (the slowest service decides), the verify run on the survivors,
  the rejoin of the zone's members after the heal.
* Alerts: the notifications the receiver recorded during the drill. Each
  expected alert must reach it for every node of the zone, and resolve; no
  other alert about the zone's nodes may reach it (NodeDown inhibits them);
  nothing still firing at the end.

Times in the report are seconds since the drill started (``t0_wall``).
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

from ansible_collections.hastack.ha.plugins.module_utils.drill.analysis import parse_wall
from ansible_collections.hastack.ha.plugins.module_utils.drill.fileio import write_json
from ansible_collections.hastack.ha.plugins.module_utils.drill.report import (
    SERVER_COLOURS,
    _cell,
    build_report,
    report_basename,
)

ZONE_REPORT_FORMAT = "hastack.drill.zone_report/1"

# stack-level threshold -> metric (all "max": the metric must be measured and <= the limit)
STACK_THRESHOLDS: dict[str, str] = {
    "max_healthy_s": "healthy_s",
    "max_rejoin_s": "rejoin_s",
    "max_app_failures_outside_window": "app_failures_outside_window",
    "max_app_failed_read_ratio": "app_failed_read_ratio",
    "max_app_failed_writes_outside_write_gap": "app_failed_writes_outside_write_gap",
}
SERVICES = ("postgres", "redis")


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _rel(wall: Any, t0: float) -> float | None:
    w = parse_wall(wall)
    return None if w is None else _r(w - t0)


def _limits(thresholds: Mapping[str, Any], allowed: Sequence[str], where: str) -> dict[str, float | None]:
    unknown = sorted(set(thresholds) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown threshold(s) {', '.join(unknown)}; known: {', '.join(allowed)}")
    out: dict[str, float | None] = {}
    for name, limit in thresholds.items():
        if limit is None or limit == "":
            out[name] = None
            continue
        try:
            out[name] = float(limit)
        except (TypeError, ValueError):
            raise ValueError(f"{where}.{name} must be a number or null, got {limit!r}") from None
    return out


# -- the app under load ------------------------------------------------------------
def app_metrics(
    load: Mapping[str, Any],
    t0: float,
    window: tuple[float | None, float | None],
    write_gap: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Requests and failures of the load generator, placed against the failover
    window and PostgreSQL's write gap (walls; the gap already widened by its grace)."""
    samples = load.get("samples") or []
    rows = [{"t": s[0], "kind": s[1], "latency": s[2], "status": s[3], "error": s[4]} for s in samples]
    fails = [r for r in rows if r["status"] == 0 or r["status"] >= 500]
    start, end = window
    before = [r for r in fails if start is not None and r["t"] + r["latency"] < start]
    after = [r for r in fails if end is None or r["t"] > end]
    reads = sum(1 for r in rows if r["kind"] == "read")
    failed_writes = [r for r in fails if r["kind"] == "write"]
    # a write failed inside the gap when it was answered after its start and sent before its end
    # no gap (PostgreSQL kept its primary): no write may fail
    outside_gap = [
        r for r in failed_writes if write_gap is None or r["t"] + r["latency"] < write_gap[0] or r["t"] > write_gap[1]
    ]
    by_status: dict[str, int] = {}
    for r in fails:
        key = str(r["status"]) if r["status"] else f"error:{r['error']}"
        by_status[key] = by_status.get(key, 0) + 1
    return {
        "requests": len(rows),
        "ok": sum(1 for r in rows if 200 <= r["status"] < 400),
        "failures": len(fails),
        "failures_5xx": sum(1 for r in fails if r["status"] >= 500),
        "failures_transport": sum(1 for r in fails if r["status"] == 0),
        "failures_by_status": dict(sorted(by_status.items())),
        "reads": reads,
        "failed_reads": sum(1 for r in fails if r["kind"] == "read"),
        "failed_read_ratio": _r(sum(1 for r in fails if r["kind"] == "read") / reads, 6) if reads else None,
        "failed_writes": len(failed_writes),
        "write_gap_t": None if write_gap is None else [_r(write_gap[0] - t0), _r(write_gap[1] - t0)],
        "failed_writes_outside_write_gap": len(outside_gap),
        "first_failure_t": _r(min(r["t"] for r in fails) - t0) if fails else None,
        "last_failure_t": _r(max(r["t"] + r["latency"] for r in fails) - t0) if fails else None,
        "failure_span_s": _r(max(r["t"] + r["latency"] for r in fails) - min(r["t"] for r in fails)) if fails else 0.0,
        "window_start_t": None if start is None else _r(start - t0),
        "window_end_t": None if end is None else _r(end - t0),
        "failures_before_window": len(before),
        "failures_after_window": len(after),
        "failures_outside_window": len(before) + len(after),
        "summary": load.get("summary"),
    }


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.2f} %"


def _write_gap(per_service: Mapping[str, Any], app: Mapping[str, Any], t0: float) -> tuple[float, float] | None:
    """PostgreSQL's write gap in wall time (its recorder's last acknowledgement
    before the disruption .. its first after), widened by ``write_grace_s``."""
    pg = per_service.get("postgres")
    gap = (pg or {}).get("metrics", {}).get("write_gap") or {}
    if gap.get("from_t") is None or gap.get("to_t") is None:
        return None
    offset = t0 + float(pg.get("offset_s") or 0)
    return offset + float(gap["from_t"]), offset + float(gap["to_t"]) + float(app.get("write_grace_s") or 0)


# -- alerts ------------------------------------------------------------------------
def alert_metrics(
    notifications: Sequence[Mapping[str, Any]],
    t0: float,
    zone_nodes: Sequence[str],
    expected: Sequence[str],
    firing_at_end: Sequence[Mapping[str, Any]] = (),
    may_outlive: Sequence[str] = (),
) -> dict[str, Any]:
    """What the receiver got: each alert's first firing and first resolved notification after it.

    ``may_outlive``: alerts over windows longer than the drill (the error
    budget's burn rates, latency): listed, but their resolution is not awaited."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for record in sorted(notifications, key=lambda r: r.get("received_at", 0)):
        received = record.get("received_at")
        for alert in (record.get("notification") or {}).get("alerts") or []:
            labels = alert.get("labels") or {}
            name = labels.get("alertname", "?")
            if name == "Watchdog":
                continue
            key = (name, labels.get("node") or labels.get("instance") or labels.get("scope") or "")
            entry = seen.setdefault(
                key,
                {
                    "alert": name,
                    "where": key[1],
                    "severity": labels.get("severity"),
                    "fired_t": None,
                    "resolved_t": None,
                },
            )
            if alert.get("status") == "firing" and entry["fired_t"] is None:
                entry["fired_t"] = _rel(received, t0)
            elif alert.get("status") == "resolved" and entry["fired_t"] is not None and entry["resolved_t"] is None:
                entry["resolved_t"] = _rel(received, t0)
    alerts = sorted(seen.values(), key=lambda e: (e["fired_t"] is None, e["fired_t"] or 0, e["alert"], e["where"]))
    missing = [
        f"{name} for {node}"
        for name in expected
        for node in zone_nodes
        if not any(e["alert"] == name and e["where"] == node and e["fired_t"] is not None for e in alerts)
    ]
    unresolved = [
        f"{e['alert']} ({e['where']})"
        for e in alerts
        if e["fired_t"] is not None and e["resolved_t"] is None and e["alert"] not in may_outlive
    ]
    # NodeDown inhibits every other alert about its node: when it is expected
    # (the zone's nodes die), nothing else about them may reach the receiver.
    # In a partition the nodes live and their own alerts are the news.
    not_inhibited = [
        f"{e['alert']} ({e['where']})"
        for e in alerts
        if "NodeDown" in expected
        and e["where"] in zone_nodes
        and e["alert"] not in expected
        and e["fired_t"] is not None
    ]
    still_firing = sorted(
        {
            f"{a.get('alertname', '?')} ({a.get('node') or a.get('instance') or ''})"
            for a in firing_at_end
            if a.get("alertname") not in ("Watchdog", *may_outlive)
        }
    )
    return {
        "notified": alerts,
        "expected": list(expected),
        "may_outlive": list(may_outlive),
        "missing": missing,
        "unresolved": unresolved,
        "not_inhibited": not_inhibited,
        "still_firing": still_firing,
        "ok": not (missing or unresolved or not_inhibited or still_firing),
    }


# -- the SLO's fast-burn alert ----------------------------------------------------------
SLO_KEYS = ("alert", "budget", "factor", "short_window_s", "long_window_s", "for_s", "lag_s")


def slo_metrics(
    load: Mapping[str, Any], notified: Sequence[Mapping[str, Any]], t0: float, slo: Mapping[str, Any], until: float
) -> dict[str, Any]:
    """Could the fast-burn alert fire within the drill, and did it?

    The error ratio Prometheus computes from the load balancer's counters is
    replayed from the drill's own load (its requests are what the load
    balancer answered; other traffic in the windows is not known here): at
    each second from the first failure until ``until`` (the end of the
    drill), the failures over the requests in the last ``short_window_s`` and
    in the last ``long_window_s``. The alert can reach the receiver only if
    both stay above ``factor`` x ``budget`` for ``for_s`` plus ``lag_s``
    (scrape, rule evaluation, Alertmanager's group_wait) in a row.
    """
    missing = [k for k in SLO_KEYS if slo.get(k) in (None, "")]
    if missing:
        raise ValueError(f"alerts.slo: {', '.join(missing)} missing; needs {', '.join(SLO_KEYS)}")
    try:
        budget, factor = float(slo["budget"]), float(slo["factor"])
        short_w, long_w = float(slo["short_window_s"]), float(slo["long_window_s"])
        hold, lag = float(slo["for_s"]), float(slo["lag_s"])
    except (TypeError, ValueError):
        raise ValueError(f"alerts.slo: {', '.join(SLO_KEYS[1:])} must be numbers, got {dict(slo)!r}") from None
    if not 0 < budget < 1:
        raise ValueError(f"alerts.slo.budget must be between 0 and 1 (1 - the SLO), got {budget}")
    threshold = factor * budget
    rows = sorted((s[0] + s[2], s[3] == 0 or s[3] >= 500) for s in load.get("samples") or [])
    times = [at for at, _ in rows]
    failed_before = list(accumulate((int(failed) for _, failed in rows), initial=0))
    fails = [t for t, failed in rows if failed]
    needed = hold + lag
    longest = 0.0
    peak = 0.0
    if fails:
        run_start = None
        t = fails[0]
        while t <= until:
            ratios = []
            for window in (short_w, long_w):
                lo, hi = bisect_right(times, t - window), bisect_right(times, t)
                ratios.append((failed_before[hi] - failed_before[lo]) / (hi - lo) if hi > lo else 0.0)
            peak = max(peak, ratios[0])
            if min(ratios) > threshold:
                run_start = t if run_start is None else run_start
                longest = max(longest, t - run_start)
            else:
                run_start = None
            t += 1.0
    fired = [e["fired_t"] for e in notified if e["alert"] == slo["alert"] and e["fired_t"] is not None]
    active_before = bool(slo.get("active_before"))
    could_fire = longest >= needed and not active_before
    if fired:
        why = f"{slo['alert']} fired at +{min(fired)} s"
    elif active_before:
        why = (
            f"{slo['alert']} was already firing or pending when the drill started (an earlier outage): "
            "Alertmanager does not notify it again, so the drill cannot see it fire"
        )
    elif could_fire:
        why = (
            f"{slo['alert']} never reached the receiver although the error ratio stayed above "
            f"{threshold:.4g} for {longest:.0f} s (>= for {hold:.0f} s + {lag:.0f} s of scrape and notification)"
        )
    else:
        why = (
            f"{slo['alert']} could not fire within the drill: the error ratio was above {factor:g} x {budget:g} "
            f"= {threshold:.4g} in both windows for {longest:.0f} s in a row, it needs {needed:.0f} s "
            f"(for {hold:.0f} s + {lag:.0f} s of scrape and notification); peak {short_w:.0f} s ratio {peak:.4g}"
        )
    return {
        "alert": slo["alert"],
        "threshold": round(threshold, 6),
        "peak_short_ratio": round(peak, 6),
        "above_threshold_s": longest,
        "needed_s": needed,
        "could_fire": could_fire,
        "fired_t": min(fired) if fired else None,
        "why": why,
        "ok": bool(fired) or not could_fire,
    }


# -- the whole report ----------------------------------------------------------------
def build_zone_report(
    *,
    zone: str,
    mode: str,
    t0_wall: float,
    services: Mapping[str, Mapping[str, Any]],
    app: Mapping[str, Any] | None,
    alerts: Mapping[str, Any] | None,
    context: Mapping[str, Any],
    thresholds: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """One report for the stack.

    ``services``: name -> {raw, thresholds, context} for each recorder;
    ``app``: {load, settle_s}; ``alerts``: {notifications, zone_nodes,
    expected, firing_at_end}; ``context``: disrupt_start / disrupt_end /
    healthy_at (name -> wall) / rejoin_s (name -> seconds) / verify / anything
    else to show; ``thresholds``: the stack's limits (:data:`STACK_THRESHOLDS`).
    """
    limits = _limits(thresholds, list(STACK_THRESHOLDS), "thresholds")
    ctx = dict(context)
    start = parse_wall(ctx.get("disrupt_start"))
    if start is None:
        raise ValueError("context.disrupt_start (the wall-clock time of the disruption) is required")
    end = parse_wall(ctx.get("disrupt_end"))
    healthy_at = {k: parse_wall(v) for k, v in (ctx.get("healthy_at") or {}).items()}
    healthy_s = {k: (None if v is None else _r(v - start)) for k, v in healthy_at.items()}
    stack_healthy = None if not healthy_s or None in healthy_s.values() else max(healthy_s.values())
    rejoin = {k: (None if v in (None, "") else _r(float(v))) for k, v in (ctx.get("rejoin_s") or {}).items()}
    stack_rejoin = None if not rejoin or None in rejoin.values() else max(rejoin.values())

    per_service: dict[str, Any] = {}
    violations: list[dict[str, Any]] = []
    for name, spec in services.items():
        rep = build_report(
            spec["raw"], f"zone-{zone}-{mode}-{name}", spec.get("thresholds") or {}, spec.get("context") or {}, events
        )
        offset = (parse_wall((spec["raw"].get("anchor") or {}).get("wall")) or t0_wall) - t0_wall
        per_service[name] = {
            "verdict": rep["verdict"],
            "offset_s": _r(offset),
            "metrics": rep["metrics"],
            "thresholds": rep["thresholds"],
            "context": rep["context"],
        }
        violations += [{**v, "service": name} for v in rep["violations"]]

    app_m = None
    if app is not None:
        settle = float(app.get("settle_s") or 0)
        window_end = None if stack_healthy is None else start + stack_healthy + settle
        app_m = app_metrics(app["load"], t0_wall, (start, window_end), _write_gap(per_service, app, t0_wall))
        app_m["settle_s"] = settle
        per_service["app"] = {"verdict": "pass", "metrics": app_m}

    stack = {
        "healthy_s": stack_healthy,
        "healthy_by_service_s": healthy_s,
        "rejoin_s": stack_rejoin,
        "rejoin_by_service_s": rejoin,
        "app_failures_outside_window": None if app_m is None else app_m["failures_outside_window"],
        "app_failed_read_ratio": None if app_m is None else app_m["failed_read_ratio"],
        "app_failed_writes_outside_write_gap": None if app_m is None else app_m["failed_writes_outside_write_gap"],
        "disrupt_start_t": _r(start - t0_wall),
        "disrupt_end_t": None if end is None else _r(end - t0_wall),
        "verify": ctx.get("verify"),
    }
    for name, limit in limits.items():
        if limit is None:
            continue
        metric = STACK_THRESHOLDS[name]
        value = stack[metric]
        if value is None or value > limit:
            shown = "not measured" if value is None else value
            violations.append(
                {
                    "threshold": name,
                    "metric": metric,
                    "value": value,
                    "limit": limit,
                    "service": "stack",
                    "message": f"stack {metric} = {shown} > {limit}",
                }
            )
    if app_m is not None and any(v["metric"].startswith("app_") for v in violations):
        per_service["app"]["verdict"] = "fail"
    if ctx.get("verify") not in (None, "pass"):
        violations.append(
            {
                "threshold": "verify",
                "metric": "verify",
                "value": ctx.get("verify"),
                "limit": "pass",
                "service": "stack",
                "message": f"verify on the surviving zones: {ctx.get('verify')}",
            }
        )

    alert_m = None
    if alerts is not None:
        alert_m = alert_metrics(
            alerts.get("notifications") or [],
            t0_wall,
            alerts.get("zone_nodes") or [],
            alerts.get("expected") or [],
            alerts.get("firing_at_end") or [],
            alerts.get("may_outlive") or [],
        )
        if alerts.get("slo") and app is not None:
            until = parse_wall(alerts.get("until")) or max(
                (s[0] for s in app["load"].get("samples") or []), default=t0_wall
            )
            alert_m["slo"] = slo_metrics(app["load"], alert_m["notified"], t0_wall, alerts["slo"], until)
            if not alert_m["slo"]["ok"]:
                alert_m["missing"].append(f"{alert_m['slo']['alert']} (the SLO)")
                alert_m["ok"] = False
        for key, label in (
            ("missing", "never notified"),
            ("not_inhibited", "notified although NodeDown should inhibit it"),
            ("unresolved", "not resolved"),
            ("still_firing", "still firing at the end"),
        ):
            if alert_m[key]:
                violations.append(
                    {
                        "threshold": f"alerts_{key}",
                        "metric": f"alerts.{key}",
                        "value": alert_m[key],
                        "limit": [],
                        "service": "alerts",
                        "message": f"alerts {label}: {', '.join(alert_m[key])}",
                    }
                )

    return {
        "format": ZONE_REPORT_FORMAT,
        "drill": f"zone-{zone}-{mode}",
        "zone": zone,
        "mode": mode,
        "started_at": datetime.fromtimestamp(t0_wall, UTC).isoformat(timespec="seconds"),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "verdict": "fail" if violations else "pass",
        "thresholds": limits,
        "violations": violations,
        "stack": stack,
        "services": per_service,
        "alerts": alert_m,
        "context": ctx,
    }


def write_zone_report(
    report: Mapping[str, Any],
    raws: Mapping[str, Mapping[str, Any]],
    load: Mapping[str, Any] | None,
    t0_wall: float,
    report_dir: str,
) -> dict[str, str]:
    os.makedirs(report_dir, exist_ok=True)
    base = os.path.join(report_dir, report_basename(report))
    files = {"json": base + ".json", "md": base + ".md", "png": base + ".png"}
    write_json(files["json"], report, indent=2)
    with open(files["md"], "w") as fh:
        fh.write(render_zone_markdown(report))
    render_zone_png(report, raws, load, t0_wall, files["png"])
    return files


# -- Markdown ---------------------------------------------------------------------------
def _s(value: Any) -> str:
    if value is None:
        return "not measured"
    return f"{value:.2f} s" if isinstance(value, float) else str(value)


def render_zone_markdown(report: Mapping[str, Any]) -> str:
    st = report["stack"]
    ctx = report["context"]
    out = [
        f"# Zone drill `{report['drill']}`: {report['verdict'].upper()}",
        "",
        f"Zone **{report['zone']}** ({_cell(', '.join(ctx.get('zone_nodes') or []))}), mode **{report['mode']}**, "
        f"started {report['started_at']}. Primaries before the drill: {_cell(ctx.get('primaries_before') or '?')}"
        f"{' (placed in the failed zone: the worst case)' if ctx.get('primaries_in_zone') else ''}.",
        "",
        "## The stack",
        "",
        "| | |",
        "|---|---|",
        f"| Disruption | +{st['disrupt_start_t']:.2f} s → "
        + (f"+{st['disrupt_end_t']:.2f} s |" if st["disrupt_end_t"] is not None else "never healed |"),
        f"| Healthy on the other zones after | {_s(st['healthy_s'])} ("
        + ", ".join(f"{k} {_s(v)}" for k, v in st["healthy_by_service_s"].items())
        + ") |",
        f"| verify.yml on the surviving zones | {_cell(st['verify'] or 'not run')} |",
        f"| Rejoin after the heal | {_s(st['rejoin_s'])} ("
        + ", ".join(f"{k} {_s(v)}" for k, v in st["rejoin_by_service_s"].items())
        + ") |",
        f"| Verdict | **{report['verdict'].upper()}** |",
        "",
        "## Per service",
        "",
        "| service | verdict | write gap | acknowledged writes lost | split brain | old → new primary | rejoin |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, svc in report["services"].items():
        m = svc["metrics"]
        if name == "app":
            continue
        lost = m["lost_writes"]
        lost_text = "not measured" if lost is None else f"{lost} of {m['writes']['ack']}"
        c = svc.get("context") or {}
        out.append(
            f"| {name} | {svc['verdict']} | {_s(m['write_gap_s'])} | {lost_text} | "
            f"{'**YES**' if m['split_brain'] else 'no'} | {c.get('old_leader') or m.get('old_leader') or '?'} → "
            f"{c.get('new_leader') or m.get('new_leader') or '?'} | {_s(m.get('rejoin_s'))} |"
        )
    app = (report["services"].get("app") or {}).get("metrics")
    if app:
        out += [
            "",
            "## The app through the load balancer",
            "",
            f"{app['requests']} requests, {app['failures']} failed ({app['failures_5xx']} 5xx, "
            f"{app['failures_transport']} without an answer; {_cell(app['failures_by_status'])}). "
            f"Failover window +{_s(app['window_start_t'])} → +{_s(app['window_end_t'])} (healthy + "
            f"{app['settle_s']:.0f} s settle); failures before it {app['failures_before_window']}, "
            f"after it {app['failures_after_window']}; first failure +{_s(app['first_failure_t'])}, "
            f"last +{_s(app['last_failure_t'])}.",
            "",
            f"Reads: {app['failed_reads']} of {app['reads']} failed "
            f"({_pct(app['failed_read_ratio'])}). Writes: {app['failed_writes']} failed, "
            f"{app['failed_writes_outside_write_gap']} of them outside PostgreSQL's write gap"
            + (
                f" (+{_s(app['write_gap_t'][0])} → +{_s(app['write_gap_t'][1])} with the grace)."
                if app.get("write_gap_t")
                else " (no write gap: none may fail)."
            ),
        ]
    al = report.get("alerts")
    if al is not None:
        out += [
            "",
            "## Alerts (what the lab receiver got)",
            "",
            "| alert | where | severity | fired | resolved |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| {e['alert']} | {e['where']} | {e['severity']} | +{_s(e['fired_t'])} | "
            f"{'+' + _s(e['resolved_t']) if e['resolved_t'] is not None else 'not resolved'} |"
            for e in al["notified"]
        ]
        out += [
            "",
            f"Expected: {', '.join(al['expected']) or 'none'} for every node of the zone. Missing: "
            f"{', '.join(al['missing']) or 'none'}. Not inhibited: {', '.join(al['not_inhibited']) or 'none'}. "
            f"Still firing at the end: {', '.join(al['still_firing']) or 'none'}.",
        ]
        if al.get("slo"):
            out += ["", f"SLO: {_cell(al['slo']['why'])}."]
    out += ["", "## Thresholds", ""]
    if report["violations"]:
        out += [f"- **FAIL** ({v['service']}): {_cell(v['message'])}" for v in report["violations"]]
    else:
        out.append("Every limit holds.")
    limits = [f"{k} {v}" for k, v in report["thresholds"].items() if v is not None]
    for name, svc in report["services"].items():
        limits += [f"{name} {k} {v}" for k, v in (svc.get("thresholds") or {}).items() if v is not None]
    out += ["", "Limits: " + (", ".join(limits) or "none") + "."]
    extra = {k: v for k, v in ctx.items() if k not in ("healthy_at", "rejoin_s", "verify")}
    if extra:
        out += ["", "## Context", "", "| fact | value |", "|---|---|"]
        out += [f"| {k} | {_cell(v)} |" for k, v in extra.items()]
    return "\n".join(out) + "\n"


# -- PNG: one lane per service ----------------------------------------------------------
def render_zone_png(
    report: Mapping[str, Any],
    raws: Mapping[str, Mapping[str, Any]],
    load: Mapping[str, Any] | None,
    t0_wall: float,
    path: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    lanes = [name for name in SERVICES if name in raws] + (["app"] if load is not None else []) + ["alerts"]
    fig, axes = plt.subplots(len(lanes), 1, sharex=True, figsize=(12, 1.9 * len(lanes) + 1))
    axes = list(axes) if len(lanes) > 1 else [axes]
    st = report["stack"]
    try:
        for ax, lane in zip(axes, lanes, strict=True):
            if lane in raws:
                svc = report["services"][lane]
                offset = svc["offset_s"] or 0.0
                names = {s["server"]: s["member"] for s in svc["metrics"]["servers"]}
                attempts = raws[lane]["writer"]["attempts"]
                for i, server in enumerate(names):
                    acks = [a["t_end"] + offset for a in attempts if a["outcome"] == "ack" and a["server"] == server]
                    ax.scatter(
                        acks,
                        [i] * len(acks),
                        s=4,
                        color=SERVER_COLOURS[i % len(SERVER_COLOURS)],
                        label=f"ack by {names[server]}",
                    )
                bad = [a["t_end"] + offset for a in attempts if a["outcome"] in ("error", "unknown")]
                ax.scatter(bad, [-1] * len(bad), s=8, marker="x", color="#d62728", label=f"error/unknown ({len(bad)})")
                ax.set_yticks(range(-1, len(names)), ["failed", *names.values()])
                m = svc["metrics"]
                ax.set_title(
                    f"{lane}: gap {_s(m['write_gap_s'])}, lost {m['lost_writes']}, "
                    f"split brain {'YES' if m['split_brain'] else 'no'}",
                    fontsize=9,
                    loc="left",
                )
            elif lane == "app":
                rows = load.get("samples") or []
                ok = [r[0] - t0_wall for r in rows if 200 <= r[3] < 400]
                bad = [r[0] - t0_wall for r in rows if r[3] == 0 or r[3] >= 500]
                ax.scatter(ok, [1] * len(ok), s=3, color="#2ca02c", label=f"ok ({len(ok)})")
                ax.scatter(bad, [0] * len(bad), s=8, marker="x", color="#d62728", label=f"5xx/no answer ({len(bad)})")
                ax.set_yticks([0, 1], ["failed", "ok"])
                a = report["services"]["app"]["metrics"]
                if a["window_end_t"] is not None:
                    ax.axvspan(
                        a["window_start_t"], a["window_end_t"], color="#ff7f0e", alpha=0.12, label="failover window"
                    )
                ax.set_title(
                    f"app: {a['failures']} failed of {a['requests']}, outside the window "
                    f"{a['failures_outside_window']}",
                    fontsize=9,
                    loc="left",
                )
            else:
                al = report.get("alerts") or {"notified": []}
                end = (st.get("disrupt_end_t") or 0) + (st.get("rejoin_s") or 0) + 30
                for i, e in enumerate(al["notified"]):
                    if e["fired_t"] is None:
                        continue
                    stop = e["resolved_t"] if e["resolved_t"] is not None else end
                    ax.broken_barh(
                        [(e["fired_t"], stop - e["fired_t"])],
                        (i - 0.35, 0.7),
                        color="#d62728" if e["severity"] == "critical" else "#ff7f0e",
                    )
                ax.set_yticks(
                    range(len(al["notified"])), [f"{e['alert']} {e['where']}" for e in al["notified"]], fontsize=7
                )
                ax.set_ylim(-0.6, max(0.6, len(al["notified"]) - 0.4))
                ax.set_title("alerts notified (firing → resolved)", fontsize=9, loc="left")
            ax.axvspan(st["disrupt_start_t"], st["disrupt_end_t"] or st["disrupt_start_t"], color="#d62728", alpha=0.07)
            if st["healthy_s"] is not None:
                ax.axvline(st["disrupt_start_t"] + st["healthy_s"], color="black", linestyle="--", linewidth=0.8)
            if lane != "alerts":
                ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, markerscale=2)
            ax.grid(True, axis="x", alpha=0.3)
        axes[-1].set_xlabel(
            f"seconds since the drill started ({report['started_at']}); red: zone down, "
            "dashed: healthy on the other zones"
        )
        fig.suptitle(
            f"{report['drill']}: {report['verdict'].upper()} | healthy after {_s(st['healthy_s'])} | "
            f"rejoin {_s(st['rejoin_s'])}",
            fontsize=11,
        )
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)

"""A drill's report: thresholds, JSON, Markdown summary and PNG timeline.

:func:`build_report` turns the recorder's raw data into one dict (metrics,
thresholds, violations, verdict); :func:`write_report` writes it as
``<dir>/<drill>-<UTC start>.json``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ansible_collections.hastack.ha.plugins.module_utils.drill.analysis import analyse
from ansible_collections.hastack.ha.plugins.module_utils.drill.fileio import write_json

REPORT_FORMAT = "hastack.drill.report/1"

# threshold -> (metric, kind). "max": the metric must be <= the limit and
# measured; "allow": a boolean metric must be false unless the limit allows it.
THRESHOLDS: dict[str, tuple[str, str]] = {
    "max_write_gap_s": ("write_gap_s", "max"),
    "max_lost_writes": ("lost_writes", "max"),
    "allow_split_brain": ("split_brain", "allow"),
    "max_rejoin_s": ("rejoin_s", "max"),
    "max_unknown_writes": ("unknown_writes", "max"),
    # Writers other than the main one (one inside the cut-off zone).
    "max_other_lost_writes": ("other_lost_writes", "max"),
    # Failovers a drill must not cause (a degraded network).
    "max_leader_changes": ("leader_change_count", "max"),
}


def check_thresholds(metrics: Mapping[str, Any], thresholds: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Violations of ``thresholds``: ``[{threshold, metric, value, limit, message}]``.

    A threshold set to ``None`` is not checked. A metric that was not measured
    (``None``: read-back failed, rejoin not timed) violates its threshold: a
    drill that cannot show a number cannot claim to be within it.
    """
    unknown = sorted(set(thresholds) - set(THRESHOLDS))
    if unknown:
        raise ValueError(f"unknown threshold(s) {', '.join(unknown)}; known: {', '.join(THRESHOLDS)}")
    violations = []
    for name, limit in thresholds.items():
        if limit is None:
            continue
        metric, kind = THRESHOLDS[name]
        value = metrics.get(metric)
        if kind == "allow":
            if value and not limit:
                violations.append(_violation(name, metric, value, limit, f"{metric} detected"))
        elif value is None:
            violations.append(_violation(name, metric, None, limit, f"{metric} was not measured"))
        elif value > limit:
            violations.append(_violation(name, metric, value, limit, f"{metric} = {value} > {limit}"))
    return violations


def normalise_thresholds(thresholds: Mapping[str, Any]) -> dict[str, Any]:
    """Numbers as numbers, booleans as booleans (inventory values may arrive as strings)."""
    out: dict[str, Any] = {}
    for name, value in thresholds.items():
        kind = THRESHOLDS.get(name, (None, None))[1]
        if value is None or kind is None:
            out[name] = value
        elif kind == "allow":
            text = str(value).strip().lower()
            if text not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                raise ValueError(f"threshold {name} must be a boolean, got {value!r}")
            out[name] = text in ("true", "yes", "1", "on")
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"threshold {name} must be a number, got {value!r}") from None
            out[name] = int(number) if number.is_integer() else number
    return out


def _violation(threshold: str, metric: str, value: Any, limit: Any, message: str) -> dict:
    return {
        "threshold": threshold,
        "metric": metric,
        "value": value,
        "limit": limit,
        "message": message,
    }


def build_report(
    raw: Mapping[str, Any],
    drill: str,
    thresholds: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    events: Sequence[Mapping[str, Any]] = (),
    raw_path: str | None = None,
    writers: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Metrics, violations and verdict of one recording (and of other writers' recordings)."""
    thresholds = normalise_thresholds(thresholds or {})
    context = dict(context or {})
    metrics = analyse(raw, context, events, writers)
    violations = check_thresholds(metrics, thresholds)
    readback = dict(raw.get("readback", {}))
    readback["ids"] = len(readback.get("ids") or [])
    writer = {k: v for k, v in raw.get("writer", {}).items() if k != "attempts"}
    return {
        "format": REPORT_FORMAT,
        "drill": drill,
        "run_id": raw.get("run_id"),
        "started_at": raw.get("started_at"),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "verdict": "fail" if violations else "pass",
        "thresholds": thresholds,
        "violations": violations,
        "metrics": metrics,
        "context": context,
        "raw": {
            "path": raw_path,
            "anchor": raw.get("anchor"),
            "config": raw.get("config"),
            "stop": raw.get("stop"),
            "writer": writer,
            "sampler": raw.get("sampler"),
            "readback": readback,
        },
    }


def report_basename(report: Mapping[str, Any]) -> str:
    """``<drill>-<UTC start as YYYYmmddTHHMMSSZ>``, safe as a file name."""
    drill = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(report["drill"])).strip("._") or "drill"
    started = report.get("started_at")
    try:
        when = datetime.fromisoformat(str(started)) if started else datetime.now(UTC)
    except ValueError:
        when = datetime.now(UTC)
    return f"{drill}-{when.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def write_report(report: Mapping[str, Any], raw: Mapping[str, Any], report_dir: str) -> dict[str, str]:
    """Write the JSON, Markdown and PNG files; return their paths."""
    os.makedirs(report_dir, exist_ok=True)
    base = os.path.join(report_dir, report_basename(report))
    files = {"json": base + ".json", "md": base + ".md", "png": base + ".png"}
    write_json(files["json"], report, indent=2)
    with open(files["md"], "w") as fh:
        fh.write(render_markdown(report))
    render_png(report, raw, files["png"])
    return files


# -- Markdown ----------------------------------------------------------------
def _s(value: Any, unit: str = " s") -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float):
        return f"{value:.2f}{unit}"
    return f"{value}{unit}"


def render_markdown(report: Mapping[str, Any]) -> str:
    m = report["metrics"]
    ctx = report.get("context", {})
    w = m["writes"]
    gap = m["write_gap"]
    old = ctx.get("old_leader", m.get("old_leader"))
    new = ctx.get("new_leader", m.get("new_leader"))
    disruptions = (
        "; ".join(
            f"{d.get('kind') or 'disruption'} {d.get('target') or '?'} "
            f"+{d['start_t']:.2f} s → +{d['end_t']:.2f} s{' (never ended)' if d['open'] else ''}"
            for d in m["disruptions"]
        )
        or "no disruption event recorded"
    )
    gap_text = _s(m["write_gap_s"])
    if gap.get("from_t") is not None:
        gap_text += f" (+{gap['from_t']:.2f} s → +{gap['to_t']:.2f} s"
        gap_text += ", still open at the end)" if gap.get("open_ended") else ")"
    lost = m["lost_writes"]
    lost_text = (
        f"not measured: {m['readback'].get('error')}"
        if lost is None
        else f"{lost} of {w['ack']} acknowledged (read back from {m['readback'].get('member') or '?'})"
    )
    unknown_text = str(m["unknown_writes"])
    if w.get("unknown_committed") is not None and m["unknown_writes"]:
        unknown_text += f" ({w['unknown_committed']} committed after all)"
    if m["split_brain"]:
        sb = [
            f"{name}: {o['late_old_leader_acks']} writes acknowledged by the old leader after the new one took over"
            for name, o in m.get("other_writers", {}).items()
            if o["late_old_leader_acks"]
        ] + [
            f"{', '.join(str(x) for x in (e.get('members') or e.get('servers') or []))} "
            f"+{e['from_t']:.2f}→+{e['to_t']:.2f} s ({e['method']})"
            for e in m["split_brain_samples"] + m["split_brain_acks"]
        ]
        sb_text = "**YES**: " + "; ".join(sb)
    else:
        sb_text = "no"
    rows = [
        ("Scenario", f"`{report['drill']}`"),
        ("Run", f"`{report.get('run_id')}`, started {report.get('started_at')}"),
        ("Disruption", disruptions),
        ("Old → new leader", f"{old or '?'} → {new or '?'}"),
        ("Longest write gap", gap_text),
        ("Acknowledged writes lost", lost_text),
        ("Unknown writes (not acknowledged)", unknown_text),
        ("Errors", f"{w['error']} of {w['attempted']} attempts"),
        ("Split brain", sb_text),
        ("Commit latency (all / sent while disrupted)", _latency_text(m.get("commit_latency"))),
        ("Rejoin", _s(m.get("rejoin_s"))),
        ("Verdict", f"**{report['verdict'].upper()}**"),
    ]
    out = [f"# Drill `{report['drill']}`: {report['verdict'].upper()}", "", "| | |", "|---|---|"]
    out += [f"| {k} | {_cell(v)} |" for k, v in rows]
    out += ["", "## Thresholds", ""]
    if report["thresholds"]:
        failed = {v["threshold"] for v in report["violations"]}
        out += ["| threshold | metric | value | limit | verdict |", "|---|---|---|---|---|"]
        for name, limit in report["thresholds"].items():
            if limit is None:
                continue
            metric = THRESHOLDS[name][0]
            verdict = "**FAIL**" if name in failed else "pass"
            out.append(f"| {name} | {metric} | {_s(m.get(metric), '')} | {limit} | {verdict} |")
    else:
        out.append("No threshold given.")
    if m["leader_changes"]:
        out += ["", "## Leader changes (from acknowledgements)", ""]
        out += ["| from | to | last ack old | first ack new | gap |", "|---|---|---|---|---|"]
        out += [
            f"| {c['from']} | {c['to']} | +{c['last_ack_old_t']:.2f} s | "
            f"+{c['first_ack_new_t']:.2f} s | {c['gap_s']:.2f} s |"
            for c in m["leader_changes"]
        ]
    if m.get("other_writers"):
        out += ["", "## Other writers", ""]
        out += [
            "| writer | acknowledged | errors | unknown | longest gap | lost | old leader's late acks "
            "| acknowledged by |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, o in m["other_writers"].items():
            by = ", ".join(f"{s['member']} ({s['acks']})" for s in o["servers"]) or "nobody"
            lost = o["lost_writes"] if o["lost_writes"] is not None else f"not measured: {o['readback_error']}"
            out.append(
                f"| {_cell(name)} | {o['writes']['ack']} | {o['writes']['error']} | {o['writes']['unknown']} | "
                f"{_s(o['write_gap_s'])} | {_cell(lost)} | {o['late_old_leader_acks']} | {_cell(by)} |"
            )
    extra = {k: v for k, v in ctx.items() if k not in ("old_leader", "new_leader", "rejoin_s")}
    if extra:
        out += ["", "## Context", "", "| fact | value |", "|---|---|"]
        out += [f"| {k} | {_cell(v)} |" for k, v in extra.items()]
    if m["errors"]["by_message"]:
        out += ["", "## Errors and unknowns", "", "| count | outcome: message |", "|---|---|"]
        out += [f"| {n} | {_cell(msg)} |" for msg, n in list(m["errors"]["by_message"].items())[:10]]
    return "\n".join(out) + "\n"


def _latency_text(latency: Mapping[str, Any] | None) -> str:
    if not latency:
        return "not measured"
    return " / ".join(
        "no acknowledged write"
        if not part["acks"]
        else f"p50 {part['p50_ms']:.1f} ms, p99 {part['p99_ms']:.1f} ms, max {part['max_ms']:.1f} ms "
        f"({part['acks']} writes)"
        for part in (latency["all"], latency["disrupted"])
    )


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


# -- PNG ------------------------------------------------------------------------
STATE_COLOURS = {"primary": "#2ca02c", "replica": "#aec7e8", "unknown": "#c7c7c7"}
# ack colours per server; red and black stay for errors and unknowns
SERVER_COLOURS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _ms(attempt: Mapping[str, Any]) -> float:
    return max(0.01, (attempt["t_end"] - attempt["t_start"]) * 1000)


def render_png(report: Mapping[str, Any], raw: Mapping[str, Any], path: str) -> None:
    """The timeline: acknowledged writes by server, errors/unknowns, member lanes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FormatStrFormatter

    m = report["metrics"]
    attempts = raw["writer"]["attempts"]
    names = {s["server"]: s["member"] for s in m["servers"]}
    lanes = m["member_windows"]

    fig, (ax, lane_ax) = plt.subplots(
        2,
        1,
        sharex=True,
        figsize=(12, 6.5),
        gridspec_kw={"height_ratios": [3, max(1, 0.45 * len(lanes))]},
    )
    try:
        durations: list[float] = []
        for i, server in enumerate(names):
            acks = [a for a in attempts if a["outcome"] == "ack" and a["server"] == server]
            ys = [_ms(a) for a in acks]
            durations += ys
            ax.scatter(
                [a["t_end"] for a in acks],
                ys,
                s=5,
                color=SERVER_COLOURS[i % len(SERVER_COLOURS)],
                label=f"ack by {names[server]} ({len(acks)})",
            )
        for outcome, marker, colour in (("error", "x", "#d62728"), ("unknown", "^", "black")):
            rows = [a for a in attempts if a["outcome"] == outcome]
            if rows:
                ys = [_ms(a) for a in rows]
                durations += ys
                ax.scatter(
                    [a["t_end"] for a in rows],
                    ys,
                    s=16 if outcome == "unknown" else 8,
                    marker=marker,
                    color=colour,
                    label=f"{outcome} ({len(rows)})",
                )
        ax.set_yscale("log")
        if durations:  # at least two decades, so the log axis gets labelled ticks
            low, high = min(durations), max(durations)
            ax.set_ylim(min(low / 2, high / 100), max(high * 2, low * 100))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.set_ylabel("attempt duration (ms)")
        for d in m["disruptions"]:
            for axis in (ax, lane_ax):
                axis.axvspan(d["start_t"], d["end_t"], color="#d62728", alpha=0.08)
            ax.text(
                d["start_t"],
                1.01,
                f"{d.get('kind') or 'disrupt'} {d.get('target') or ''}",
                transform=ax.get_xaxis_transform(),
                fontsize=8,
                color="#d62728",
            )
        for c in m["leader_changes"]:
            for axis in (ax, lane_ax):
                axis.axvline(c["first_ack_new_t"], color="black", linestyle="--", linewidth=0.8)
            ax.text(
                c["first_ack_new_t"],
                0.98,
                f" → {c['to']}",
                transform=ax.get_xaxis_transform(),
                fontsize=8,
                va="top",
            )
        for ev in m["events"]:
            if ev.get("event") not in ("disrupt_start", "disrupt_end"):
                ax.axvline(ev["t"], color="grey", linestyle=":", linewidth=0.8)
                ax.text(
                    ev["t"],
                    0.02,
                    f" {ev.get('event')}",
                    transform=ax.get_xaxis_transform(),
                    fontsize=7,
                    color="grey",
                    rotation=90,
                )
        gap = m["write_gap"]
        if gap.get("from_t") is not None and gap["seconds"]:
            ax.annotate(
                "",
                xy=(gap["to_t"], 0.9),
                xytext=(gap["from_t"], 0.9),
                xycoords=ax.get_xaxis_transform(),
                arrowprops={"arrowstyle": "<->", "color": "#9467bd"},
            )
            ax.text(
                (gap["from_t"] + gap["to_t"]) / 2,
                0.91,
                f"longest gap {gap['seconds']:.2f} s",
                transform=ax.get_xaxis_transform(),
                ha="center",
                fontsize=8,
                color="#9467bd",
            )
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, markerscale=2)
        ax.grid(True, which="major", alpha=0.3)

        for row, (_member, windows) in enumerate(sorted(lanes.items())):
            # each state lasts until the next one was first seen: no white between samples
            ends = [w["from_t"] for w in windows[1:]] + [windows[-1]["to_t"] if windows else 0]
            for state in STATE_COLOURS:
                bars = [
                    (w["from_t"], end - w["from_t"])
                    for w, end in zip(windows, ends, strict=True)
                    if w["state"] == state
                ]
                if bars:
                    lane_ax.broken_barh(bars, (row - 0.35, 0.7), color=STATE_COLOURS[state])
        for e in m["split_brain_samples"] + m["split_brain_acks"]:
            lane_ax.axvspan(e["from_t"], e["to_t"], color="none", hatch="///", edgecolor="red")
        lane_ax.set_yticks(range(len(lanes)), sorted(lanes))
        lane_ax.set_ylim(-0.6, max(0.6, len(lanes) - 0.4))
        lane_ax.legend(
            handles=[Patch(color=c, label=s) for s, c in STATE_COLOURS.items()],
            loc="upper left",
            bbox_to_anchor=(1.005, 1.0),
            fontsize=8,
        )
        lane_ax.set_xlabel(f"seconds since the recording started ({report.get('started_at')})")

        lost = m["lost_writes"]
        fig.suptitle(
            f"{report['drill']}: {report['verdict'].upper()} | gap {_s(m['write_gap_s'])} | "
            f"lost {'?' if lost is None else lost} | unknown {m['unknown_writes']} | "
            f"split brain {'YES' if m['split_brain'] else 'no'}",
            fontsize=11,
        )
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def finish_module(module: Any, report: Mapping[str, Any], files: Mapping[str, str], what: str, **result: Any) -> None:
    """exit_json with the verdict, violations and files (plus ``result``), or
    fail_json listing the violations when the module's fail_on_violation says so."""
    result = {
        "changed": not module.check_mode,
        "verdict": report["verdict"],
        "violations": report["violations"],
        **result,
        "files": dict(files),
    }
    if report["violations"] and module.params["fail_on_violation"]:
        listed = "; ".join(v["message"] for v in report["violations"])
        module.fail_json(
            msg=f"{what} crossed {len(report['violations'])} threshold(s): {listed} (report: {files['md']})", **result
        )
    module.exit_json(**result)

"""The zone drill's report: every service judged together on one timeline.

The recordings are recorder-shaped (conftest's Timeline); the app load and the
receiver's notifications have the shapes tools/app_load.py and the lab's
alert receiver write.
"""

from __future__ import annotations

import json

import pytest
from ansible_collections.hastack.ha.plugins.module_utils.drill import zone_report
from conftest import failover_timeline

T0 = 1_700_000_000.0  # the recordings' anchor (conftest)
KILL = T0 + 4.9
SETTLE = 10.0
LIMITS = {"max_healthy_s": 34, "max_rejoin_s": 60, "max_app_failures_outside_window": 0}
SERVICE_LIMITS = {"max_write_gap_s": 24, "max_lost_writes": 0, "allow_split_brain": False}


def app_load(*failures_at: float, until: float = 40.0) -> dict:
    """60 requests/s through the load balancer, 503 from the kill until 12 s, plus failures_at."""
    samples = []
    t = 0.0
    while t < until:
        failed = 4.9 <= t < 12.0 or any(abs(t - f) < 1e-6 for f in failures_at)
        samples.append([T0 + t, "write" if int(t * 60) % 5 == 0 else "read", 0.004, 503 if failed else 200, None])
        t = round(t + 1 / 60, 6)
    for f in failures_at:
        if not any(abs(s[0] - (T0 + f)) < 1e-6 for s in samples):
            samples.append([T0 + f, "read", 0.004, 503, None])
    return {"format": "hastack-app-load/1", "summary": {}, "samples": sorted(samples)}


def notification(at: float, status: str, name: str, node: str, severity: str = "critical") -> dict:
    labels = {"alertname": name, "node": node, "severity": severity}
    return {"received_at": T0 + at, "notification": {"alerts": [{"status": status, "labels": labels,
                                                                   "fingerprint": f"{name}-{node}"}]}}  # fmt: skip


def build(app: dict | None = None, notifications: list | None = None, **context) -> dict:
    pg, redis = failover_timeline(), failover_timeline()
    ctx = {
        "disrupt_start": KILL,
        "disrupt_end": T0 + 150.0,
        "healthy_at": {"etcd": T0 + 6.0, "redis": T0 + 7.0, "postgres": T0 + 8.5, "app": T0 + 12.0},
        "rejoin_s": {"etcd": 2.0, "redis": 9.5, "postgres": 14.0, "app": 15.0},
        "verify": "pass",
        "zone_nodes": ["node-a"],
        **context,
    }
    if notifications is None:
        notifications = [notification(150.0, "firing", "NodeDown", "node-a"),
                         notification(180.0, "resolved", "NodeDown", "node-a")]  # fmt: skip
    return zone_report.build_zone_report(
        zone="a",
        mode="kill",
        t0_wall=T0,
        services={
            "postgres": {"raw": pg.raw(), "thresholds": SERVICE_LIMITS, "context": {"rejoin_s": 14.0}},
            "redis": {"raw": redis.raw(), "thresholds": SERVICE_LIMITS, "context": {"rejoin_s": 9.5}},
        },
        app={"load": app or app_load(), "settle_s": SETTLE},
        alerts={"notifications": notifications, "zone_nodes": ["node-a"], "expected": ["NodeDown"]},
        context=ctx,
        thresholds=LIMITS,
    )


def test_a_clean_zone_kill_passes_and_writes_three_files(tmp_path):
    doc = build()

    assert doc["verdict"] == "pass", doc["violations"]
    stack = doc["stack"]
    assert stack["healthy_s"] == pytest.approx(12.0 - 4.9)  # the slowest service: the app
    assert stack["healthy_by_service_s"]["redis"] == pytest.approx(2.1)
    assert stack["rejoin_s"] == 15.0
    app = doc["services"]["app"]["metrics"]
    assert app["failures"] == app["failures_5xx"] == 426  # 4.9 s .. 12 s at 60/s
    assert app["window_start_t"] == pytest.approx(4.9) and app["window_end_t"] == pytest.approx(22.0)
    assert app["failures_outside_window"] == 0
    assert doc["services"]["postgres"]["metrics"]["lost_writes"] == 0
    assert doc["alerts"]["notified"] == [{"alert": "NodeDown", "where": "node-a", "severity": "critical",
                                          "fired_t": 150.0, "resolved_t": 180.0}]  # fmt: skip

    pg, redis = failover_timeline().raw(), failover_timeline().raw()
    files = zone_report.write_zone_report(doc, {"postgres": pg, "redis": redis}, app_load(), T0, str(tmp_path))
    assert sorted(files) == ["json", "md", "png"]
    assert files["md"].endswith("zone-a-kill-20231114T221320Z.md")
    assert json.loads((tmp_path / files["json"].rsplit("/", 1)[1]).read_text()) == json.loads(json.dumps(doc))
    md = (tmp_path / files["md"].rsplit("/", 1)[1]).read_text()
    assert "| postgres | pass | 3.02 s | 0 of 350 | no | node-a → node-b | 14.00 s |" in md
    assert "| NodeDown | node-a | critical | +150.00 s | +180.00 s |" in md
    png = (tmp_path / files["png"].rsplit("/", 1)[1]).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000


def test_an_app_failure_after_the_window_fails_the_drill():
    # the window ends SETTLE s after the stack is healthy (12 s): 22 s
    doc = build(app=app_load(21.5, 30.0))

    app = doc["services"]["app"]["metrics"]
    assert app["failures_after_window"] == 1 and app["failures_outside_window"] == 1
    assert doc["verdict"] == "fail"
    assert [v["message"] for v in doc["violations"]] == ["stack app_failures_outside_window = 1 > 0.0"]


def test_a_failure_before_the_disruption_counts_too():
    doc = build(app=app_load(2.0))

    assert doc["services"]["app"]["metrics"]["failures_before_window"] == 1
    assert doc["verdict"] == "fail"


def test_alerts_missing_not_inhibited_unresolved_and_still_firing_are_named():
    notifications = [
        notification(100.0, "firing", "ExporterDown", "node-a", "warning"),  # should have been inhibited
        notification(120.0, "firing", "PatroniNoLeader", "hastack"),  # never resolved
        notification(130.0, "firing", "NodeDown", "node-b"),  # not the zone's node
        notification(160.0, "resolved", "NodeDown", "node-b"),
    ]
    doc = build(notifications=notifications)

    alerts = doc["alerts"]
    assert alerts["missing"] == ["NodeDown for node-a"]
    assert alerts["not_inhibited"] == ["ExporterDown (node-a)"]
    assert alerts["unresolved"] == ["ExporterDown (node-a)", "PatroniNoLeader (hastack)"]
    by_service = {v["threshold"] for v in doc["violations"] if v["service"] == "alerts"}
    assert by_service == {"alerts_missing", "alerts_not_inhibited", "alerts_unresolved"}


def test_a_service_that_never_got_healthy_is_not_measured_and_fails():
    doc = build(healthy_at={"redis": T0 + 7.0, "postgres": None, "app": T0 + 12.0}, verify="rc 2: PostgreSQL down")

    assert doc["stack"]["healthy_s"] is None
    messages = [v["message"] for v in doc["violations"]]
    assert "stack healthy_s = not measured > 34.0" in messages
    assert "verify on the surviving zones: rc 2: PostgreSQL down" in messages


def test_a_lost_postgres_write_fails_that_service():
    pg = failover_timeline()
    raw = pg.raw(present=pg.acked_ids()[:-1])
    doc = zone_report.build_zone_report(
        zone="a", mode="kill", t0_wall=T0, services={"postgres": {"raw": raw, "thresholds": SERVICE_LIMITS}},
        app=None, alerts=None, context={"disrupt_start": KILL}, thresholds={},
    )  # fmt: skip

    assert doc["services"]["postgres"]["verdict"] == "fail"
    assert [(v["service"], v["metric"], v["value"]) for v in doc["violations"]] == [("postgres", "lost_writes", 1)]


@pytest.mark.parametrize(
    ("thresholds", "context", "message"),
    [
        ({"max_nap_s": 1}, {"disrupt_start": KILL}, "unknown threshold(s) max_nap_s"),
        ({"max_healthy_s": "soon"}, {"disrupt_start": KILL}, "thresholds.max_healthy_s must be a number or null"),
        ({}, {}, "context.disrupt_start"),
    ],
)
def test_bad_input_is_refused_naming_the_key(thresholds, context, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        zone_report.build_zone_report(zone="a", mode="kill", t0_wall=T0, services={}, app=None, alerts=None,
                                      context=context, thresholds=thresholds)  # fmt: skip


def test_in_a_partition_the_zone_alerts_are_news_but_must_resolve():
    notifications = [
        notification(60.0, "firing", "DatabaseDown", "node-a"),  # the cut-off member's database, really down
        notification(90.0, "resolved", "DatabaseDown", "node-a"),
        notification(70.0, "firing", "RedisTwoMasters", ""),
        notification(75.0, "firing", "ErrorBudgetBurnFast", ""),  # its windows outlive the drill
    ]
    doc = zone_report.build_zone_report(
        zone="a", mode="partition", t0_wall=T0, services={}, app=None,
        alerts={"notifications": notifications, "zone_nodes": ["node-a"], "expected": [],
                "may_outlive": ["ErrorBudgetBurnFast"],
                "firing_at_end": [{"alertname": "ErrorBudgetBurnFast"}, {"alertname": "Watchdog"}]},
        context={"disrupt_start": KILL}, thresholds={},
    )  # fmt: skip

    assert doc["alerts"]["not_inhibited"] == [] and doc["alerts"]["missing"] == []
    assert doc["alerts"]["unresolved"] == ["RedisTwoMasters ()"]
    assert doc["alerts"]["still_firing"] == []
    assert [e["alert"] for e in doc["alerts"]["notified"]] == ["DatabaseDown", "RedisTwoMasters", "ErrorBudgetBurnFast"]
    assert doc["verdict"] == "fail"


def test_degraded_reads_failed_reads_ratio_and_writes_outside_the_write_gap():
    """Issue 17's targets: reads fail at most 0.1 % of the time, writes only
    inside PostgreSQL's write gap (+ the grace)."""
    limits = {"max_app_failed_read_ratio": 0.001, "max_app_failed_writes_outside_write_gap": 0}

    def doc_for(load: dict, grace: float) -> dict:
        pg, redis = failover_timeline(), failover_timeline()
        return zone_report.build_zone_report(
            zone="a", mode="kill", t0_wall=T0,
            services={"postgres": {"raw": pg.raw(), "thresholds": SERVICE_LIMITS},
                      "redis": {"raw": redis.raw(), "thresholds": SERVICE_LIMITS}},
            app={"load": load, "settle_s": SETTLE, "write_grace_s": grace},
            alerts=None, context={"disrupt_start": KILL, "healthy_at": {"app": T0 + 12.0}}, thresholds=limits,
        )  # fmt: skip

    gap = doc_for(app_load(), 0)["services"]["app"]["metrics"]["write_gap_t"]
    assert gap[1] - gap[0] == pytest.approx(3.02, abs=0.01)  # the recorder's gap, on the drill's time base

    # only writes fail, only inside the gap: the targets are met
    load = app_load(until=40.0)
    for s in load["samples"]:
        inside = gap[0] <= s[0] - T0 <= gap[1]
        s[3] = 503 if (s[1] == "write" and inside) else 200
    doc = doc_for(load, 2.0)
    app = doc["services"]["app"]["metrics"]
    assert (app["failed_reads"], app["failed_read_ratio"]) == (0, 0.0) and app["failed_writes"] > 0
    assert app["failed_writes_outside_write_gap"] == 0 and doc["verdict"] == "pass", doc["violations"]

    # every request failing from the kill until 12 s (today's 503s): both targets missed
    doc = doc_for(app_load(), 2.0)
    app = doc["services"]["app"]["metrics"]
    assert app["failed_reads"] == 341 and app["failed_read_ratio"] == pytest.approx(341 / app["reads"], abs=1e-6)
    assert app["failed_writes_outside_write_gap"] > 0
    assert sorted(v["threshold"] for v in doc["violations"]) == [
        "max_app_failed_read_ratio", "max_app_failed_writes_outside_write_gap"]  # fmt: skip
    assert doc["services"]["app"]["verdict"] == "fail"
    md = zone_report.render_zone_markdown(doc)
    assert f"Reads: 341 of {app['reads']} failed" in md and "of them outside PostgreSQL's write gap" in md


# --- the SLO's fast-burn alert --------------------------------------------------------
SLO = {"alert": "ErrorBudgetBurnFast", "budget": 0.001, "factor": 14.4, "short_window_s": 300,
       "long_window_s": 3600, "for_s": 120, "lag_s": 45}  # fmt: skip


def build_slo(load: dict, notifications: list, until: float, slo: dict | None = None) -> dict:
    pg = failover_timeline()
    return zone_report.build_zone_report(
        zone="a", mode="kill", t0_wall=T0,
        services={"postgres": {"raw": pg.raw(), "thresholds": SERVICE_LIMITS}},
        app={"load": load, "settle_s": SETTLE},
        alerts={"notifications": notifications, "zone_nodes": ["node-a"], "expected": [],
                "slo": slo or SLO, "until": T0 + until, "may_outlive": ["ErrorBudgetBurnFast"]},
        context={"disrupt_start": KILL, "disrupt_end": T0 + 150.0, "healthy_at": {"app": T0 + 12.0},
                 "rejoin_s": {"app": 15.0}, "verify": "pass", "zone_nodes": ["node-a"]},
        thresholds={"max_app_failures_outside_window": None},
    )  # fmt: skip


def test_the_fast_burn_alert_must_fire_when_the_drill_failed_enough_for_long_enough():
    # 7.1 s of 503s at 60 requests/s over a 40 s load: the 5 min and 1 h
    # ratios (only the load's requests) stay far above 14.4 x 0.1 % for the
    # rest of the drill
    load = app_load()
    fired = notification(170.0, "firing", "ErrorBudgetBurnFast", "")
    quiet = build_slo(load, [], until=300.0)["alerts"]
    assert quiet["slo"]["could_fire"] and quiet["slo"]["fired_t"] is None
    assert quiet["slo"]["above_threshold_s"] >= 165
    # the peak: at the last failure, the failures over every request so far
    ends = [t + lat for t, _, lat, _, _ in load["samples"]]
    failed = [t + lat for t, _, lat, status, _ in load["samples"] if status >= 500]
    so_far = [e for e in ends if e <= max(failed)]
    assert quiet["slo"]["peak_short_ratio"] == pytest.approx(len(failed) / len(so_far), abs=0.01)
    assert "ErrorBudgetBurnFast (the SLO)" in quiet["missing"] and not quiet["ok"]
    doc = build_slo(load, [fired], until=300.0)
    assert doc["alerts"]["slo"]["fired_t"] == 170.0 and doc["alerts"]["slo"]["ok"]
    assert "ErrorBudgetBurnFast fired at +170.0 s" in zone_report.render_zone_markdown(doc)


def test_a_drill_too_short_for_the_alert_says_why_and_passes():
    # the drill ended 60 s after the first failure: the alert's `for` alone is 120 s
    doc = build_slo(app_load(), [], until=65.0)
    slo = doc["alerts"]["slo"]
    assert not slo["could_fire"] and slo["ok"] and doc["alerts"]["missing"] == []
    assert "could not fire within the drill" in slo["why"] and "it needs 165 s" in slo["why"]


def test_failures_below_the_burn_threshold_do_not_make_it_expected():
    # one failed request in 40 s at 60/s: 0.04 %, under 14.4 x 0.1 %
    load = app_load(until=40.0)
    load["samples"] = [[t, k, lat, 503 if i == 100 else 200, e] for i, (t, k, lat, _, e) in enumerate(load["samples"])]
    slo = build_slo(load, [], until=600.0)["alerts"]["slo"]
    assert not slo["could_fire"] and slo["ok"] and slo["above_threshold_s"] == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [({"for_s": None}, "for_s missing"), ({"factor": "fast"}, "must be numbers"), ({"budget": 1.5}, "between 0 and 1")],
)
def test_bad_slo_input_is_refused_naming_the_key(change, message):
    with pytest.raises(ValueError, match=message):
        build_slo(app_load(), [], until=100.0, slo={**SLO, **change})


def test_an_slo_alert_already_active_at_the_start_is_not_required_to_fire_again():
    """An earlier outage left ErrorBudgetBurnFast firing (its windows are long):
    Alertmanager sends nothing new, the report says so rather than fail."""
    slo = build_slo(app_load(), [], until=300.0, slo={**SLO, "active_before": True})["alerts"]["slo"]
    assert slo["ok"] and not slo["could_fire"] and "already firing or pending" in slo["why"]

"""The report: three files, a real PNG, a JSON that round-trips, named violations."""

from __future__ import annotations

import json

import pytest
from ansible_collections.hastack.ha.plugins.module_utils.drill import report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
THRESHOLDS = {
    "max_write_gap_s": 30,
    "max_lost_writes": 0,
    "allow_split_brain": False,
    "max_rejoin_s": 60,
}


def test_writes_json_md_png(failover, tmp_path):
    raw = failover.raw()
    doc = report.build_report(raw, "leader-kill", THRESHOLDS, {"rejoin_s": 14.2})
    files = report.write_report(doc, raw, str(tmp_path / "reports"))

    assert files == {
        ext: str(tmp_path / "reports" / f"leader-kill-20250102T030405Z.{ext}") for ext in ("json", "md", "png")
    }
    png = (tmp_path / "reports" / "leader-kill-20250102T030405Z.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 20_000

    loaded = json.loads((tmp_path / "reports" / "leader-kill-20250102T030405Z.json").read_text())
    assert loaded == json.loads(json.dumps(doc))
    assert loaded["verdict"] == "pass"
    assert loaded["violations"] == []
    assert loaded["metrics"]["lost_writes"] == 0
    assert "attempts" not in loaded["raw"]["writer"]

    md = (tmp_path / "reports" / "leader-kill-20250102T030405Z.md").read_text()
    assert "| Old → new leader | node-a → node-b |" in md
    assert "| Longest write gap | 3.02 s" in md
    assert "| Split brain | no |" in md
    assert "| Rejoin | 14.20 s |" in md
    assert "| max_lost_writes | lost_writes | 0 | 0 | pass |" in md


def test_violations_name_metric_value_limit(failover):
    failover.writes(10, 10.5, member="node-a", timeline=1)  # split brain by acks
    raw = failover.raw(present=failover.acked_ids()[5:])  # five acknowledged writes lost
    doc = report.build_report(raw, "leader-kill", {**THRESHOLDS, "max_write_gap_s": 1.5})
    by_metric = {v["metric"]: v for v in doc["violations"]}
    assert doc["verdict"] == "fail"
    assert by_metric["write_gap_s"]["value"] == pytest.approx(3.02, abs=0.01)
    assert by_metric["write_gap_s"]["limit"] == 1.5
    assert by_metric["lost_writes"] == {
        "threshold": "max_lost_writes",
        "metric": "lost_writes",
        "value": 5,
        "limit": 0,
        "message": "lost_writes = 5 > 0",
    }
    assert by_metric["split_brain"]["value"] is True
    assert by_metric["split_brain"]["limit"] is False
    assert by_metric["rejoin_s"]["value"] is None  # not measured: fails, never passes silently
    assert by_metric["rejoin_s"]["message"] == "rejoin_s was not measured"
    md = report.render_markdown(doc)
    assert "| max_write_gap_s | write_gap_s | 3.02 | 1.5 | **FAIL** |" in md
    assert "| Split brain | **YES**" in md


def test_failed_read_back_violates_loss_threshold(failover):
    doc = report.build_report(failover.raw(readback_ok=False), "x", {"max_lost_writes": 0})
    assert doc["violations"][0]["metric"] == "lost_writes"
    assert doc["violations"][0]["value"] is None


def test_clean_run_within_thresholds_and_null_threshold_skipped(failover):
    doc = report.build_report(failover.raw(), "x", {**THRESHOLDS, "max_rejoin_s": None}, {"rejoin_s": None})
    assert doc["violations"] == []


def test_unknown_threshold_is_refused(failover):
    with pytest.raises(ValueError, match=r"unknown threshold.*max_gap.*known: max_write_gap_s"):
        report.build_report(failover.raw(), "x", {"max_gap": 3})


def test_basename_is_safe():
    assert report.report_basename({"drill": "kill / node-a", "started_at": None}).startswith("kill_node-a-")


def test_context_rejoin_must_be_seconds(failover):
    assert report.build_report(failover.raw(), "x", {}, {"rejoin_s": "34.5"})["metrics"]["rejoin_s"] == pytest.approx(
        34.5
    )
    with pytest.raises(ValueError, match=r"context.rejoin_s must be a number of seconds"):
        report.build_report(failover.raw(), "x", {}, {"rejoin_s": "soon"})


def test_other_writer_is_reported_and_held_to_its_own_loss_limit(failover, timeline):
    timeline._id = 100_000
    timeline.writes(0, 4.9, member="node-a", timeline=1)
    timeline.writes(4.9, 9.5, outcome="unknown", error="no answer within 3 s")
    timeline.writes(9.5, 10, member="node-b", timeline=2)
    inzone = timeline.raw(present=timeline.acked_ids()[2:])  # two of its acknowledged writes lost
    thresholds = {**THRESHOLDS, "max_other_lost_writes": 0, "max_leader_changes": 1}
    doc = report.build_report(
        failover.raw(), "partition", thresholds, {"rejoin_s": 3.0}, writers={"in-zone (node-a)": inzone}
    )
    assert [(v["threshold"], v["value"]) for v in doc["violations"]] == [("max_other_lost_writes", 2)]
    md = report.render_markdown(doc)
    assert "## Other writers" in md
    assert "| in-zone (node-a) | 270 | 0 | 230 | 4.62 s | 2 | 0 | node-a (245), node-b (25) |" in md
    assert "| max_leader_changes | leader_change_count | 1 | 1 | pass |" in md
    assert "| Commit latency (all / sent while disrupted) | p50 2.0 ms, p99 2.0 ms" in md

"""Each analysis catches its seeded fault and stays silent on a clean timeline."""

from __future__ import annotations

import pytest
from ansible_collections.hastack.ha.plugins.module_utils.drill import analysis
from conftest import Timeline


# -- write gap -----------------------------------------------------------------
def test_gap_clean_timeline_is_one_interval(timeline):
    timeline.writes(0, 10)
    gap = analysis.write_gap(timeline.attempts, t_stop=10.0)
    assert gap["seconds"] == pytest.approx(0.02, abs=1e-3)
    assert gap["open_ended"] is False


def test_gap_catches_outage_and_says_when(failover):
    gap = analysis.write_gap(failover.attempts, t_stop=10.0)
    assert gap["seconds"] == pytest.approx(3.02, abs=0.01)
    assert gap["from_t"] == pytest.approx(4.982, abs=1e-3)
    assert gap["to_t"] == pytest.approx(8.002, abs=1e-3)
    assert gap["to_id"] == gap["from_id"] + 151  # 150 errors in between
    assert gap["open_ended"] is False


def test_gap_that_never_ended_counts(timeline):
    timeline.writes(0, 5)
    timeline.writes(5, 9, outcome="error")
    gap = analysis.write_gap(timeline.attempts, t_stop=9.0)
    assert gap["seconds"] == pytest.approx(4.018, abs=1e-3)  # 9.0 - last ack at 4.982
    assert gap["open_ended"] is True


def test_gap_without_any_ack_is_the_whole_run(timeline):
    timeline.writes(0, 3, outcome="error")
    assert analysis.write_gap(timeline.attempts, t_stop=3.0)["seconds"] == 3.0


# -- acknowledged writes lost ------------------------------------------------------
def test_loss_clean_timeline(failover):
    loss = analysis.lost_writes(failover.attempts, failover.acked_ids())
    assert loss["lost"] == 0
    assert loss["lost_ids"] == []
    assert loss["error_committed"] == 0


def test_loss_catches_missing_acknowledged_ids(failover):
    acked = failover.acked_ids()
    missing = acked[240:243]  # the last acks of node-a before the kill
    present = [i for i in acked if i not in missing]
    loss = analysis.lost_writes(failover.attempts, present)
    assert loss["lost"] == 3
    assert loss["lost_ids"] == missing


def test_loss_not_measured_when_read_back_failed(failover):
    assert analysis.lost_writes(failover.attempts, None)["lost"] is None


def test_loss_reports_error_that_committed(timeline):
    ids = timeline.writes(0, 1, outcome="error")
    loss = analysis.lost_writes(timeline.attempts, ids[:1])
    assert loss["error_committed"] == 1


# -- unknown writes ---------------------------------------------------------------
def test_unknown_clean_timeline(failover):
    raw = failover.raw()
    assert analysis.analyse(raw)["unknown_writes"] == 0


def test_unknown_counted_and_not_taken_for_acks(timeline):
    timeline.writes(0, 2)
    unknown = timeline.writes(2, 2.04, outcome="unknown", error="no answer within 3 s")
    timeline.writes(2.04, 4, outcome="error")
    timeline.writes(4, 5)
    raw = timeline.raw(present=[*timeline.acked_ids(), unknown[0]])
    m = analysis.analyse(raw)
    assert m["unknown_writes"] == 2
    assert m["unknown_ids"] == unknown
    assert m["writes"]["unknown_committed"] == 1
    assert m["lost_writes"] == 0  # an unknown write that is absent is not a loss
    assert m["writes"]["ack"] == 150


# -- split brain (a): samples ------------------------------------------------------
def test_split_brain_samples_clean_failover(failover):
    assert analysis.split_brain_from_samples(failover.samples) == []


def test_split_brain_samples_catches_two_writable_members(timeline):
    timeline.lane("node-a", 0, 9, "primary")  # old leader still writable until 9 s
    timeline.lane("node-b", 0, 6, "replica")
    timeline.lane("node-b", 6, 10, "primary", 2)
    episodes = analysis.split_brain_from_samples(timeline.samples)
    assert len(episodes) == 1
    ep = episodes[0]
    assert ep["members"] == ["node-a", "node-b"]
    assert ep["from_t"] == pytest.approx(6.003, abs=1e-3)
    assert ep["to_t"] == pytest.approx(8.8, abs=1e-3)


def test_split_brain_samples_ignores_one_stale_sample(timeline):
    timeline.lane("node-a", 0, 5, "primary")
    timeline.lane("node-a", 5, 7, "unknown")
    timeline.lane("node-a", 7, 7.2, "primary")  # thawed, answers once, then demoted
    timeline.lane("node-a", 7.2, 10, "replica", 2)
    timeline.lane("node-b", 0, 6, "replica")
    timeline.lane("node-b", 6, 10, "primary", 2)
    assert analysis.split_brain_from_samples(timeline.samples) == []


# -- split brain (b): interleaving acknowledgements --------------------------------------
def test_split_brain_acks_clean_failover(failover):
    assert analysis.split_brain_from_acks(failover.attempts) == []


def test_split_brain_acks_catches_interleaving(timeline):
    timeline.writes(0, 3, member="node-a", timeline=1)
    timeline.writes(3, 4, member="node-b", timeline=2)
    timeline.writes(4, 5, member="node-a", timeline=1)  # back to the old primary
    episodes = analysis.split_brain_from_acks(timeline.attempts)
    kinds = {e["kind"] for e in episodes}
    assert kinds == {"interleave", "timeline_regression"}
    inter = next(e for e in episodes if e["kind"] == "interleave")
    assert inter["servers"] == ["127.42.0.11", "127.42.0.12"]
    assert inter["from_t"] == pytest.approx(2.982, abs=1e-3)
    assert inter["to_t"] == pytest.approx(4.002, abs=1e-3)


def test_split_brain_acks_interleaving_without_timelines_is_flagged(timeline):
    timeline.writes(0, 1, member="node-a", timeline=None)
    timeline.writes(1, 2, member="node-b", timeline=None)
    timeline.writes(2, 3, member="node-a", timeline=None)
    assert [e["kind"] for e in analysis.split_brain_from_acks(timeline.attempts)] == ["interleave"]


def test_split_brain_acks_legitimate_flip_back_is_silent(timeline):
    timeline.writes(0, 3, member="node-a", timeline=1)
    timeline.writes(3, 6, member="node-b", timeline=2)
    timeline.writes(6, 9, member="node-a", timeline=3)  # node-a promoted anew
    assert analysis.split_brain_from_acks(timeline.attempts) == []


def test_split_brain_acks_catches_old_timeline_after_new(timeline):
    timeline.writes(0, 3, member="node-b", timeline=2)
    timeline.writes(3, 4, member="node-a", timeline=1)
    episodes = analysis.split_brain_from_acks(timeline.attempts)
    assert [e["kind"] for e in episodes] == ["timeline_regression"]
    assert episodes[0]["timelines"] == [2, 1]


# -- leaders, errors, events, everything -------------------------------------------
def test_leaders_and_errors(failover):
    names = analysis.server_names(failover.raw()["config"]["members"])
    servers = analysis.servers(failover.attempts, names)
    assert [s["member"] for s in servers] == ["node-a", "node-b"]
    assert servers[0]["last_ack_t"] == pytest.approx(4.982, abs=1e-3)
    assert servers[1]["first_ack_t"] == pytest.approx(8.002, abs=1e-3)
    changes = analysis.leader_changes(failover.attempts, names)
    assert changes == [
        {
            "from": "node-a",
            "to": "node-b",
            "last_ack_old_t": pytest.approx(4.982, abs=1e-3),
            "first_ack_new_t": pytest.approx(8.002, abs=1e-3),
            "gap_s": pytest.approx(3.02, abs=1e-3),
        }
    ]
    errors = analysis.error_summary(failover.attempts)
    assert errors["total"] == 150
    assert errors["by_message"] == {"error: connection refused": 150}


def test_analyse_clean_failover(failover):
    m = analysis.analyse(failover.raw(), context={"rejoin_s": 12.5})
    assert m["split_brain"] is False
    assert m["lost_writes"] == 0
    assert m["unknown_writes"] == 0
    assert m["write_gap_s"] == pytest.approx(3.02, abs=0.01)
    assert (m["old_leader"], m["new_leader"]) == ("node-a", "node-b")
    assert m["writes"] == {
        "attempted": 500,
        "ack": 350,
        "error": 150,
        "unknown": 0,
        "unknown_committed": 0,
        "error_committed": 0,
    }
    assert m["disruptions"] == [{"target": "node-a", "kind": "kill", "start_t": 4.9, "end_t": 5.0, "open": False}]
    assert m["answering_again_s"]["node-a"] == pytest.approx(4.003, abs=1e-3)
    assert m["rejoin_s"] == 12.5
    assert [w["state"] for w in m["member_windows"]["node-a"]] == ["primary", "unknown", "replica"]


def test_analyse_flags_split_brain_either_way(failover):
    failover.writes(10, 10.5, member="node-a", timeline=1)
    m = analysis.analyse(failover.raw())
    assert m["split_brain"] is True
    assert m["split_brain_samples"] == []
    assert m["split_brain_acks"]


def test_extra_events_get_relative_time(failover):
    raw = failover.raw()
    extra = [
        {"t_wall": 1_700_000_006.5, "event": "heal"},
        {"t_wall": "2023-11-14T22:13:27.5+00:00", "event": "iso"},
    ]
    events = {e["event"]: e["t"] for e in analysis.analyse(raw, extra_events=extra)["events"]}
    assert events["heal"] == pytest.approx(6.5)
    assert events["iso"] == pytest.approx(7.5)
    assert analysis.parse_wall("not a time") is None


# -- commit latency ----------------------------------------------------------------
def test_latency_splits_writes_sent_while_disrupted(timeline):
    timeline.writes(0, 2, latency=0.002)
    timeline.writes(2, 4, latency=0.250)  # the degraded stretch
    timeline.writes(4, 6, latency=0.002)
    windows = [{"start_t": 2.0, "end_t": 3.99}]
    latency = analysis.commit_latency(timeline.attempts, windows)
    assert latency["disrupted"]["acks"] == 100
    assert latency["disrupted"]["p50_ms"] == pytest.approx(250, abs=0.1)
    assert latency["all"]["acks"] == 300
    assert latency["all"]["p50_ms"] == pytest.approx(2, abs=0.1)
    assert latency["all"]["p99_ms"] == pytest.approx(250, abs=0.1)  # a third of the writes were slow
    assert analysis.commit_latency(timeline.attempts)["disrupted"] == {
        "acks": 0,
        "p50_ms": None,
        "p99_ms": None,
        "max_ms": None,
    }


def test_latency_p99_is_the_nearest_rank(timeline):
    timeline.writes(0, 1.98, latency=0.001)  # 99 fast writes
    timeline.writes(1.98, 2.0, latency=0.5)  # and one slow
    stats = analysis.commit_latency(timeline.attempts)["all"]
    assert (stats["acks"], stats["p99_ms"], stats["max_ms"]) == (100, 1.0, 500.0)


# -- a second writer, inside the cut-off zone ------------------------------------------
def _inzone(ids_offset: int = 100_000) -> Timeline:
    """A writer on node-a's machine: writes to node-a until the cut, then gets no answer."""
    tl = Timeline()
    tl._id = ids_offset
    tl.writes(0, 4.9, member="node-a", timeline=1)
    tl.writes(4.9, 9.5, outcome="unknown", error="no answer within 3 s")
    tl.writes(9.5, 10, member="node-b", timeline=2)
    return tl


def test_other_writer_clean_partition(failover):
    inzone = _inzone()
    raw = inzone.raw()
    raw["anchor"] = {"mono": 1000.5, "wall": 1_700_000_000.5}  # started half a second later
    m = analysis.analyse(failover.raw(), writers={"in-zone": raw})
    other = m["other_writers"]["in-zone"]
    assert other["offset_s"] == 0.5
    assert other["lost_writes"] == 0 and m["other_lost_writes"] == 0
    assert other["late_old_leader_acks"] == 0
    assert [s["member"] for s in other["servers"]] == ["node-a", "node-b"]
    assert other["servers"][1]["first_ack_t"] == pytest.approx(10.002, abs=1e-3)  # 9.5 + 0.5 + latency
    assert m["split_brain"] is False


def test_other_writer_catches_the_old_primary_writing_on(failover):
    inzone = _inzone()
    late = inzone.writes(10, 10.2, member="node-a", timeline=1)  # the old primary still acknowledges
    m = analysis.analyse(failover.raw(), writers={"in-zone": inzone.raw()})
    other = m["other_writers"]["in-zone"]
    assert other["late_old_leader_acks"] == len(late) == 10
    assert other["late_old_leader_ids"] == late
    assert m["split_brain"] is True
    assert m["split_brain_acks"] == []  # the main writer alone saw nothing


def test_other_writer_loss_counts_and_unmeasured_loss_is_none(failover):
    inzone = _inzone()
    acked = inzone.acked_ids()
    m = analysis.analyse(failover.raw(), writers={"in-zone": inzone.raw(present=acked[5:])})
    assert m["other_writers"]["in-zone"]["lost_ids"] == acked[:5]
    assert m["other_lost_writes"] == 5
    m = analysis.analyse(failover.raw(), writers={"in-zone": inzone.raw(readback_ok=False)})
    assert m["other_lost_writes"] is None
    assert analysis.analyse(failover.raw())["other_lost_writes"] is None


def test_leader_change_count(failover):
    assert analysis.analyse(failover.raw())["leader_change_count"] == 1

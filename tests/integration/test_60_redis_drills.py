"""Redis with Sentinel drills on the suite's lab (playbooks/drill_redis.yml).

Runs after the lab is deployed (test_10_lab.py) and before it is destroyed
(test_90_destroy.py). The graceful failover, the master cut off and two
sentinels killed each stay within the inventory's limits
(exit code and JSON report), and every drill leaves iptables exactly as it
found it and the deployment healthy. The master killed runs in the zone
drill (test_75_zone.py: the master's whole zone dies). Freeze, stop and one
sentinel killed run by hand (docs/drills.md); their code paths are the
kill's and the sentinel kill's.
"""

from __future__ import annotations

import pytest
from ansible_collections.hastack.ha.plugins.filter.redis import redis_problems

from .drill_helpers import iptables_rules, redis_info, run_drill, wait_redis_healthy

pytestmark = pytest.mark.lab

# Each drill: ~45 s (failover) to ~75 s (partition) on the lab.
# The master killed: test_75_zone.py (its zone dies with it, under load).
SCENARIOS = ["failover", "partition", "two_sentinels_kill"]


def summarize(drill: str, report: dict) -> str:
    metrics, context = report["metrics"], report["context"]
    changes = metrics.get("leader_changes") or []
    return (
        f"{drill}: gap {metrics['write_gap_s']} s, lost {metrics['lost_writes']}, unknown "
        f"{metrics['unknown_writes']}, two masters samples/acks {len(metrics['split_brain_samples'])}/"
        f"{len(metrics['split_brain_acks'])}, rejoin {metrics['rejoin_s']} s, "
        f"{context.get('old_leader')} -> {context.get('new_leader')}, changes {changes}, "
        f"violations {report['violations']}"
    )


@pytest.mark.parametrize("drill", SCENARIOS)
def test_redis_drill_stays_within_its_limits(lab, tmp_path, drill):
    before = wait_redis_healthy(lab)
    rules_before = iptables_rules()

    run = run_drill(lab, drill, tmp_path, playbook="drill_redis.yml")

    assert run.report is not None, f"{drill}: no report written (rc {run.rc}):\n{run.tail()}"
    report = run.report
    metrics, limits, context = report["metrics"], report["thresholds"], report["context"]
    summary = f"{summarize(drill, report)}; report {run.report_path}"
    assert run.rc == 0, f"{summary}\n{run.tail()}"
    assert report["verdict"] == "pass" and report["violations"] == [], summary
    assert metrics["write_gap_s"] <= limits["max_write_gap_s"], summary
    assert metrics["lost_writes"] <= limits["max_lost_writes"], summary
    assert metrics["readback"]["ok"], summary
    assert metrics["rejoin_s"] is not None and metrics["rejoin_s"] <= limits["max_rejoin_s"], summary
    if drill == "two_sentinels_kill":
        # One sentinel left cannot reach quorum 2: the master must stay put
        # and keep taking writes.
        assert context["old_leader"] == context["new_leader"], summary
        assert metrics["lost_writes"] == 0 and metrics["leader_changes"] == [], summary
    else:
        assert context["old_leader"] != context["new_leader"], summary
        assert context["old_master_after"] == "slave, link up", summary
    if drill == "partition":
        # Writes acknowledged by the cut-off old master are lost; the drill
        # reports them and bounds them by min-replicas-max-lag (+ slack).
        assert 0 <= metrics["lost_writes"] <= limits["max_lost_writes"], summary
    else:
        assert metrics["lost_writes"] == 0, summary
        assert metrics["split_brain"] is False, summary

    after = redis_info(lab)
    assert redis_problems(after) == [], f"{drill}: unhealthy after the drill: {redis_problems(after)}"
    assert before["master"] is not None and after["master"] is not None
    assert iptables_rules() == rules_before, f"{drill}: iptables differs after the drill"

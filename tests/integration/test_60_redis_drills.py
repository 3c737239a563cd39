"""Redis with Sentinel drills on the suite's fleet (playbooks/drill_redis.yml).

Runs after the fleet is deployed (the ``lab`` fixture) and before it is
destroyed (test_90_destroy.py). The master's machine killed (it boots again
in the heal; its Sentinel dies with it), the graceful failover, the master's
machine cut off at the box (clients included, with a writer inside it) and
two sentinels killed each stay within the
inventory's limits (exit code and JSON report), and every drill leaves the
box's and every machine's iptables exactly as it found them and the
deployment healthy. Freeze, stop and one sentinel killed run by hand
(docs/drills.md); their code paths are the stop's (systemctl) and the
sentinel kill's.
"""

from __future__ import annotations

import pytest
from ansible_collections.hastack.ha.plugins.filter.redis import redis_problems

from .conftest import ssh
from .drill_helpers import fleet_iptables, redis_info, run_drill, wait_redis_healthy

pytestmark = pytest.mark.lab

# Seconds since PID 1 of a machine started (field 22 of /proc/1/stat, in clock ticks since the kernel booted).
PID1_AGE = (
    "python3 -c \"import os; t = int(open('/proc/1/stat').read().rsplit(')', 1)[1].split()[19]); "
    "print(float(open('/proc/uptime').read().split()[0]) - t / os.sysconf('SC_CLK_TCK'))\""
)

# Each drill: ~1 min (failover) to ~2 min (kill: a machine boots) on the fleet.
SCENARIOS = ["kill", "failover", "partition", "two_sentinels_kill"]


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
    rules_before = fleet_iptables(lab)

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
        # The master's machine is cut off at the box, clients included: the
        # writer on the box (the region) loses nothing; the writer inside the
        # machine (an app in that zone) keeps writing to the old master until
        # it fences itself. Those writes are lost, bounded by
        # min-replicas-max-lag (+ slack), and the report says on which side.
        assert context["partition_cut"] == "all", summary
        assert metrics["lost_writes"] == 0, summary
        (inzone,) = metrics["other_writers"].values()
        assert inzone["readback_ok"], f"{summary}; in-zone writer {inzone}"
        assert 0 <= inzone["lost_writes"] <= limits["max_other_lost_writes"], f"{summary}; in-zone writer {inzone}"
        assert [srv["member"] for srv in inzone["servers"]][:1] == [context["old_leader"]], (
            f"{summary}; in-zone {inzone}"
        )
    else:
        assert metrics["lost_writes"] == 0, summary
        assert metrics["split_brain"] is False, summary

    if drill == "kill":
        # The whole machine died and booted again (its PID 1 is younger than the drill), and
        # its Redis and Sentinel units came up from that boot.
        age = float(ssh(context["old_leader"], PID1_AGE, check=True).stdout)
        assert age < run.seconds, f"{summary}; PID 1 of {context['old_leader']} runs for {age:.0f} s"
        assert context.get("units_up_s") is not None, summary

    after = redis_info(lab)
    assert redis_problems(after) == [], f"{drill}: unhealthy after the drill: {redis_problems(after)}"
    assert before["master"] is not None and after["master"] is not None
    rules_after = fleet_iptables(lab)
    changed = {where: sorted(set(rules_after.get(where, [])) ^ set(lines)) for where, lines in rules_before.items()}
    assert rules_after == rules_before, f"{drill}: iptables differs after the drill: {changed}"

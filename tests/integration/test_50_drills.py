"""PostgreSQL drills on the suite's fleet (playbooks/drill_postgres.yml).

Runs after the fleet is deployed (test_10_lab.py) and before it is destroyed
(test_90_destroy.py): the planned switchover, the leader's machine frozen
whole, cut off at the box (clients included, with a writer inside the
cut-off machine) and on a degraded network (packet loss, no failover
expected) each stay within the inventory's limits (exit code and JSON
report); a drill refuses to start
on an unhealthy cluster (a replica's Patroni stopped with systemctl over
SSH); every drill leaves the iptables of the box and of every machine
exactly as it found them.
"""

from __future__ import annotations

import re
import time

import pytest

from .conftest import ssh
from .drill_helpers import (
    fleet_iptables,
    is_healthy,
    patroni_cluster,
    run_drill,
    wait_healthy,
)

pytestmark = pytest.mark.lab

# Each drill: ~40 s (switchover) to ~130 s (partition) on the lab. The leader
# kill runs in test_65_app.py, under the app's load: its exit code is the
# drill's verdict on the same limits, and the load adds the client's view.
SCENARIOS = ["switchover", "freeze", "partition", "degraded"]


def our_iptables(lab: dict) -> dict[str, list[str]]:
    """The box's and every machine's iptables, without the chains of other fleets on the box.

    Other fleets (an engineer's, molecule's) may be booted or destroyed on the
    same box while a drill runs; their HSFLEET-<NAME> chains are not ours.
    """
    others = re.compile(rf"HSFLEET-(?!{re.escape(lab['name'].upper())}\b)")
    # An empty table (a machine's filter table, loaded by a partition's first
    # rule, stays with its built-in chains at ACCEPT) counts as no table.
    empty = re.compile(r"^(\*|COMMIT$|:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ACCEPT )")
    rules = fleet_iptables(lab)
    rules["box"] = [line for line in rules["box"] if not others.search(line)]
    return {host: [line for line in lines if not empty.search(line)] for host, lines in rules.items()}


def patroni_unit(host: str) -> str:
    """The systemd unit that runs Patroni on a machine, as its systemd names it."""
    out = ssh(host, "systemctl list-units --type=service --all --plain --no-legend '*patroni*'", check=True).stdout
    units = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert len(units) == 1, f"{host}: expected one Patroni unit, found {units}"
    return units[0]


@pytest.mark.parametrize("drill", SCENARIOS)
def test_drill_stays_within_its_limits(lab, tmp_path, drill):
    wait_healthy(lab)
    rules_before = our_iptables(lab)

    run = run_drill(lab, drill, tmp_path, timeout=1500)

    assert run.report is not None, f"{drill}: no report written (rc {run.rc}):\n{run.tail()}"
    report = run.report
    metrics, limits, context = report["metrics"], report["thresholds"], report["context"]
    summary = (
        f"{drill}: gap {metrics['write_gap_s']} s, lost {metrics['lost_writes']}, unknown "
        f"{metrics['unknown_writes']}, split brain samples/acks {len(metrics['split_brain_samples'])}/"
        f"{len(metrics['split_brain_acks'])}, rejoin {metrics['rejoin_s']} s, "
        f"{context.get('old_leader')} -> {context.get('new_leader')}; report {run.report_path}"
    )
    assert run.rc == 0, f"{summary}\n{run.tail()}"
    assert report["verdict"] == "pass" and report["violations"] == [], summary
    assert metrics["lost_writes"] == 0, summary
    assert metrics["write_gap_s"] <= limits["max_write_gap_s"], summary
    assert metrics["rejoin_s"] is not None and metrics["rejoin_s"] <= limits["max_rejoin_s"], summary
    if drill == "freeze":
        # A thawed old leader may answer "primary" until Patroni demotes it;
        # the acknowledgements decide (see drill_postgres.yml).
        assert context["split_brain_verdict"] == "acks"
        assert context["freeze_scope"] == "machine", summary
        assert metrics["split_brain_acks"] == [], summary
    else:
        assert metrics["split_brain"] is False, summary
    if drill == "partition":
        # Cut at the box, and a writer inside the cut-off machine: it lost
        # nothing acknowledged, and the old primary took none of its writes
        # once the new one had taken over.
        assert context["partition_cut"] == "all", summary
        (inzone,) = metrics["other_writers"].values()
        assert inzone["readback_ok"] and inzone["lost_writes"] == 0, f"{summary}; in-zone writer {inzone}"
        assert inzone["late_old_leader_acks"] == 0, f"{summary}; in-zone writer {inzone}"
        assert inzone["writes"]["ack"] > 0, f"{summary}; in-zone writer {inzone}"
    if drill == "degraded":
        # Packet loss on the leader's machine: no failover, commits slower.
        assert metrics["leader_change_count"] == 0, summary
        assert context["old_leader"] == context["new_leader"], summary
        latency = metrics["commit_latency"]["disrupted"]
        assert latency["acks"] > 0 and latency["p99_ms"] is not None, f"{summary}; latency {latency}"
    else:
        assert context["old_leader"] != context["new_leader"], summary
    assert metrics["readback"]["ok"], summary
    assert is_healthy(patroni_cluster(lab)), f"{drill}: the cluster is not healthy after the drill"
    assert our_iptables(lab) == rules_before, f"{drill}: iptables differs after the drill"


def test_drill_refuses_to_start_on_an_unhealthy_cluster(lab, tmp_path):
    cluster = wait_healthy(lab)
    leader = next(m["name"] for m in cluster["members"] if m["role"] == "leader")
    replica = next(m["name"] for m in cluster["members"] if m["role"] != "leader")
    unit = patroni_unit(replica)
    rules_before = our_iptables(lab)
    ssh(replica, f"systemctl stop {unit}", timeout=150, check=True)
    try:
        deadline = time.monotonic() + 30
        while is_healthy(patroni_cluster(lab)) and time.monotonic() < deadline:
            time.sleep(1)
        run = run_drill(lab, "switchover", tmp_path, timeout=1200)
        assert run.rc != 0, f"the drill started on a cluster whose {replica} is stopped:\n{run.tail()}"
        assert "Refusing to start the switchover drill" in run.output, run.tail()
        assert f"not running: {replica} {unit.removesuffix('.service')}" in run.output, (
            f"the refusal does not name {replica}'s {unit}:\n{run.tail()}"
        )
        assert run.report is None, "a refused drill wrote a report"
        after = patroni_cluster(lab)
        assert after is not None
        assert next(m["name"] for m in after["members"] if m["role"] == "leader") == leader
    finally:
        ssh(replica, f"systemctl start {unit}", timeout=60, check=True)
    wait_healthy(lab, timeout=120)
    assert our_iptables(lab) == rules_before

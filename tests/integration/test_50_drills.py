"""PostgreSQL drills on the suite's lab (playbooks/drill_postgres.yml).

Runs after the lab is deployed (test_10_lab.py) and before it is destroyed
(test_90_destroy.py): the planned switchover, the leader frozen and
partitioned each stay within the inventory's limits (exit code and JSON
report); a drill refuses to start on an unhealthy cluster; every drill leaves
iptables exactly as it found it.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from .drill_helpers import (
    iptables_rules,
    is_healthy,
    lab_var,
    patroni_cluster,
    run_drill,
    wait_healthy,
)

pytestmark = pytest.mark.lab

# Each drill: ~40 s (switchover) to ~90 s (partition) on the lab. The leader
# kill runs in test_65_app.py, under the app's load: its exit code is the
# drill's verdict on the same limits, and the load adds the client's view.
SCENARIOS = ["switchover", "freeze", "partition"]


@pytest.mark.parametrize("drill", SCENARIOS)
def test_drill_stays_within_its_limits(lab, tmp_path, drill):
    wait_healthy(lab)
    rules_before = iptables_rules()

    run = run_drill(lab, drill, tmp_path)

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
        assert metrics["split_brain_acks"] == [], summary
    else:
        assert metrics["split_brain"] is False, summary
    assert context["old_leader"] != context["new_leader"], summary
    assert metrics["readback"]["ok"], summary
    assert is_healthy(patroni_cluster(lab)), f"{drill}: the cluster is not healthy after the drill"
    assert iptables_rules() == rules_before, f"{drill}: iptables differs after the drill"


def test_drill_refuses_to_start_on_an_unhealthy_cluster(lab, tmp_path):
    cluster = wait_healthy(lab)
    leader = next(m["name"] for m in cluster["members"] if m["role"] == "leader")
    replica = next(m["name"] for m in cluster["members"] if m["role"] != "leader")
    program = f"{lab_var(lab, 'ha_lab_name', 'hastack')}-{replica}-patroni"
    rules_before = iptables_rules()
    subprocess.run(["supervisorctl", "stop", program], check=True, capture_output=True, timeout=150)
    try:
        deadline = time.monotonic() + 30
        while is_healthy(patroni_cluster(lab)) and time.monotonic() < deadline:
            time.sleep(1)
        run = run_drill(lab, "switchover", tmp_path)
        assert run.rc != 0, f"the drill started on a cluster whose {replica} is stopped:\n{run.tail()}"
        assert "Refusing to start the switchover drill" in run.output, run.tail()
        assert replica in run.output, f"the refusal does not name {replica}:\n{run.tail()}"
        assert run.report is None, "a refused drill wrote a report"
        after = patroni_cluster(lab)
        assert after is not None
        assert next(m["name"] for m in after["members"] if m["role"] == "leader") == leader
    finally:
        subprocess.run(["supervisorctl", "start", program], check=True, capture_output=True, timeout=60)
    wait_healthy(lab, timeout=120)
    assert iptables_rules() == rules_before

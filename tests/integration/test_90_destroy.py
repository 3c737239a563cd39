"""Last, on the suite's fleet after every drill (switchovers, machine kills,
partitions, zone outages): site.yml reruns clean and verifies; then
fleet_destroy.yml removes everything the fleet made on the box, and a second
destroy changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import STATE, box_state, record_timing, run_playbook, tail

pytestmark = pytest.mark.lab


def test_site_reruns_clean_after_the_drills(lab):
    rerun = run_playbook("site.yml")
    record_timing("rerun_after_drills_s", rerun.seconds)
    assert rerun.rc == 0, f"site.yml after the drills' failovers and machine kills:\n{tail(rerun)}"
    assert "Assert the cluster is healthy" in rerun.output


def test_fleet_destroy_leaves_no_trace(lab):
    if lab["reuse"]:
        pytest.skip("HASTACK_IT_REUSE: the fleet stays up")
    run = run_playbook("playbooks/fleet_destroy.yml")
    record_timing("fleet_destroy_s", run.seconds)
    assert run.rc == 0, tail(run)
    assert not STATE.exists()
    assert not Path(f"/var/lib/hastack-fleet/{lab['name']}").exists()
    # machines, mounts, bridges, veths, iptables chains, ip_forward: as before the boot
    assert box_state() == lab["before"]
    again = run_playbook("playbooks/fleet_destroy.yml")
    assert again.rc == 0 and again.changed_total() == 0, again.recap

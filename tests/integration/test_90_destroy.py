"""Last: lab_destroy.yml removes everything the suite's lab created."""

from __future__ import annotations

import pytest

from .conftest import lab_leftovers, record_timing, run_playbook, tail

pytestmark = pytest.mark.lab


def test_destroy_leaves_nothing_of_the_lab(lab):
    name = lab["name"]
    run = run_playbook("playbooks/lab_destroy.yml")
    record_timing("destroy_s", run.seconds)
    assert run.rc == 0, tail(run)
    # files, logs, cron, supervisord programs, processes, node groups, iptables chains
    assert lab_leftovers(name) == []
    again = run_playbook("playbooks/lab_destroy.yml")
    assert again.rc == 0 and again.changed_total() == 0, again.recap

"""Last: lab_destroy.yml removes everything the suite's lab created."""

from __future__ import annotations

import glob
import subprocess

import pytest

from .conftest import record_timing, run_playbook, tail

pytestmark = pytest.mark.lab


def test_destroy_leaves_nothing_of_the_lab(lab):
    name = lab["name"]
    run = run_playbook("playbooks/lab_destroy.yml")
    record_timing("destroy_s", run.seconds)
    assert run.rc == 0, tail(run)
    assert glob.glob(f"/etc/hastack/{name}-*") == []
    assert glob.glob(f"/var/lib/hastack/{name}-*") == []
    assert glob.glob(f"/etc/supervisor/conf.d/{name}-*") == []
    assert glob.glob(f"/opt/hastack/{name}-*") == []  # the app's code and virtualenv
    status = subprocess.run(["supervisorctl", "status"], capture_output=True, text=True, check=False)
    assert f"{name}-" not in status.stdout
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert f"/var/lib/hastack/{name}-" not in procs
    assert f"/etc/hastack/{name}-" not in procs
    groups = subprocess.run(["getent", "group"], capture_output=True, text=True, check=True).stdout
    assert f"{name}-node-" not in groups
    assert f"{name}-lb-" not in groups
    again = run_playbook("playbooks/lab_destroy.yml")
    assert again.rc == 0 and again.changed_total() == 0, again.recap

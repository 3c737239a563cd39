"""ha_service runs daemons as systemd units only: on a host whose PID 1 is not
systemd (this box) it refuses, naming the rule, and writes nothing.

The role's systemd path runs on every fleet machine of the integration suite
and the molecule scenarios (each daemon of the stack is one of its units).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_cli import run_ansible_tool

pytestmark = pytest.mark.skipif(
    Path("/run/systemd/system").is_dir(), reason="this box runs systemd: the refusal cannot be seen here"
)


def run_role(tmp_path: Path, name: str, state: str, command: str = "") -> subprocess.CompletedProcess:
    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "ha_service",
                    "ansible.builtin.include_role": {"name": "ha_service"},
                    "vars": {"ha_service_name": name, "ha_service_state": state, "ha_service_command": command},
                }
            ],
        }
    ]
    playbook = tmp_path / f"{state}.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    return run_ansible_tool(
        "ansible-playbook",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        str(playbook),
    )


def test_a_host_without_systemd_is_refused_and_nothing_is_written(tmp_path):
    name = "hsunit-refused"
    run = run_role(tmp_path, name, "started", command="/bin/sleep 600")
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert "localhost has no /run/systemd/system; rule: hastack runs its daemons as systemd units" in output
    assert not Path(f"/etc/systemd/system/{name}.service").exists()
    assert f"Run {name}" not in output


def test_a_bad_unit_name_is_refused_first(tmp_path):
    run = run_role(tmp_path, "bad name;rm", "started", command="/bin/true")
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "ha_service_name must be a plain unit name" in output

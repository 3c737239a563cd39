"""ha_service under supervisord, for real on this machine (it installs and starts supervisord if needed).

The programs are named hsunit-* and log into the test's own directory, so a lab
running beside the tests is not touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from ansible_cli import run_ansible_tool

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or Path("/run/systemd/system").is_dir(),
    reason="needs root and no systemd: the role runs supervisord itself",
)

CONF_D = Path("/etc/supervisor/conf.d")


def run_role(tmp_path: Path, name: str, state: str, command: str = "") -> subprocess.CompletedProcess:
    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "ha_service",
                    "ansible.builtin.include_role": {"name": "ha_service"},
                    "vars": {
                        "ha_service_name": name,
                        "ha_service_state": state,
                        "ha_service_command": command,
                        "ha_service_log_dir": str(tmp_path / "log"),
                        "ha_service_stop_timeout": 5,
                    },
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


def supervised(name: str) -> str:
    proc = subprocess.run(["supervisorctl", "status", name], capture_output=True, text=True, check=False)
    return proc.stdout


@pytest.fixture
def program(tmp_path):
    name = f"hsunit-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["supervisorctl", "stop", name], capture_output=True, check=False)
    (CONF_D / f"{name}.conf").unlink(missing_ok=True)
    subprocess.run(["supervisorctl", "update"], capture_output=True, check=False)


def test_started_then_absent(tmp_path, program):
    started = run_role(tmp_path, program, "started", command="/bin/sleep 600")
    assert started.returncode == 0, started.stdout[-3000:]
    assert supervised(program).split()[1] in ("STARTING", "RUNNING")  # startsecs=2: STARTING at first
    assert (tmp_path / "log" / f"{program}.log").exists()

    absent = run_role(tmp_path, program, "absent")
    assert absent.returncode == 0, absent.stdout[-3000:]
    assert not (CONF_D / f"{program}.conf").exists()
    assert "no such process" in supervised(program)


def test_absent_removes_a_program_supervisord_never_loaded(tmp_path, program):
    """A deploy that failed between writing the program and loading it leaves such a file;
    the cleanup must remove it, not fail on supervisorctl's "no such group"."""
    started = run_role(tmp_path, program, "started", command="/bin/sleep 600")  # installs and starts supervisord
    assert started.returncode == 0, started.stdout[-3000:]
    subprocess.run(["supervisorctl", "stop", program], capture_output=True, check=True)
    subprocess.run(["supervisorctl", "remove", program], capture_output=True, check=True)
    assert (CONF_D / f"{program}.conf").exists() and "no such process" in supervised(program)

    absent = run_role(tmp_path, program, "absent")
    assert absent.returncode == 0, absent.stdout[-3000:]
    assert not (CONF_D / f"{program}.conf").exists()

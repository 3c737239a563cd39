"""The two modules through ansible-playbook, the way the drill playbook uses them.

The recorder runs as an async task against the private PostgreSQL, the play
appends events and creates the stop file, async_status waits, drill_report
writes the files; a second drill_report with an impossible limit must fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")

PLAY = """
- name: Drill modules, end to end
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Start the recorder
      hastack.ha.pg_drill_recorder:
        conninfo: "host={{ pg_host }} port={{ pg_port }}"
        password: "{{ pg_password }}"
        members:
          - {name: solo, host: "{{ pg_host }}", port: "{{ pg_port }}"}
        run_id: "{{ run_id }}"
        stop_file: "{{ work }}/stop"
        events_file: "{{ work }}/events.jsonl"
        output: "{{ work }}/raw.json"
        max_duration_s: 60
        readback_timeout_s: 5
      async: 120
      poll: 0
      register: recorder

    - name: Note the disruption
      ansible.builtin.lineinfile:
        path: "{{ work }}/events.jsonl"
        line: "{{ item | to_json }}"
        create: true
        mode: "0644"
      loop:
        - {t_wall: "{{ now().timestamp() }}", event: disrupt_start, target: solo, kind: noop}
        - {t_wall: "{{ now().timestamp() + 0.5 }}", event: disrupt_end, target: solo, kind: noop}

    - name: Let it record a moment
      ansible.builtin.wait_for:
        timeout: 1

    - name: Stop the recorder
      ansible.builtin.file:
        path: "{{ work }}/stop"
        state: touch
        mode: "0644"

    - name: Wait for the recorder
      ansible.builtin.async_status:
        jid: "{{ recorder.ansible_job_id }}"
      register: recorded
      until: recorded.finished
      retries: 60
      delay: 0.5

    - name: Report
      hastack.ha.drill_report:
        raw: "{{ recorded.output }}"
        drill: e2e
        report_dir: "{{ work }}/report"
        thresholds: {max_write_gap_s: 5, max_lost_writes: 0, allow_split_brain: false,
                     max_rejoin_s: 60}
        context: {rejoin_s: 1.5, note: from the play}
      register: good

    - name: Report with an impossible limit
      hastack.ha.drill_report:
        raw: "{{ recorded.output }}"
        drill: e2e-strict
        report_dir: "{{ work }}/report"
        thresholds: {max_write_gap_s: 0.000001}
      register: strict
      ignore_errors: true

    - name: Keep the results for the test
      ansible.builtin.copy:
        dest: "{{ work }}/results.json"
        content: "{{ {'recorded': recorded, 'good': good, 'strict': strict} | to_json }}"
        mode: "0644"
"""


@pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="ansible-playbook not in the venv")
def test_modules_through_ansible(pg, tmp_path):
    (tmp_path / "play.yml").write_text(PLAY)
    extra = {
        "pg_host": pg.host,
        "pg_port": pg.port,
        "pg_password": pg.password,
        "run_id": f"e2e-{uuid.uuid4().hex[:8]}",
        "work": str(tmp_path),
        "ansible_python_interpreter": sys.executable,
    }
    (tmp_path / "vars.json").write_text(json.dumps(extra))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local",
         "-e", f"@{tmp_path / 'vars.json'}", str(tmp_path / "play.yml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert pg.password not in proc.stdout

    results = json.loads((tmp_path / "results.json").read_text())
    recorded, good, strict = results["recorded"], results["good"], results["strict"]
    assert recorded["stop_reason"] == "stop_file"
    assert recorded["writes"]["ack"] > 30
    assert recorded["readback"]["acked_missing"] == 0

    assert good["verdict"] == "pass"
    assert good["changed"] is True
    assert good["metrics"]["lost_writes"] == 0
    assert good["metrics"]["rejoin_s"] == 1.5
    assert [d["target"] for d in good["metrics"]["disruptions"]] == ["solo"]
    for path in good["files"].values():
        assert Path(path).stat().st_size > 0
    assert "| note | from the play |" in Path(good["files"]["md"]).read_text()

    assert strict["failed"] is True
    assert "crossed 1 threshold(s): write_gap_s = " in strict["msg"]
    assert strict["violations"][0]["limit"] == 1e-06

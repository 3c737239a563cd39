"""hastack.ha.redis_drill_recorder through ansible-playbook, the way drill_redis.yml uses it.

The recorder runs as an async task against the private master/replica/sentinel
(fixtures/redis/redis_drill_lab.py), the play appends events and creates the
stop file, async_status waits, and drill_report reads the raw JSON unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "fixtures" / "redis"))
from redis_drill_lab import MASTER_HOST, redis_drill_lab
from redis_unit_lab import REDIS_SERVER

REPO = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")

PLAY = """
- name: Redis drill recorder, end to end
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Start the recorder
      hastack.ha.redis_drill_recorder:
        master_name: "{{ master_name }}"
        sentinels: [{name: s1, host: "{{ sentinel_host }}", port: "{{ sentinel_port }}"}]
        members:
          - {name: m, host: "{{ master_host }}", port: "{{ master_port }}"}
          - {name: r, host: "{{ replica_host }}", port: "{{ replica_port }}"}
        password: "{{ password }}"
        sentinel_password: "{{ sentinel_password }}"
        run_id: e2e
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
        - {t_wall: "{{ now().timestamp() }}", event: disrupt_start, target: m, kind: noop}
        - {t_wall: "{{ now().timestamp() + 0.5 }}", event: disrupt_end, target: m, kind: noop}

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
        drill: redis-e2e
        report_dir: "{{ work }}/report"
        thresholds: {max_write_gap_s: 5, max_lost_writes: 0, allow_split_brain: false, max_rejoin_s: 60}
        context: {rejoin_s: 1.0}
      register: good

    - name: Keep the results for the test
      ansible.builtin.copy:
        dest: "{{ work }}/results.json"
        content: "{{ {'recorded': recorded, 'good': good} | to_json }}"
        mode: "0644"
"""


@pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="ansible-playbook not in the venv")
@pytest.mark.skipif(not REDIS_SERVER.exists(), reason=f"Redis is not installed ({REDIS_SERVER} missing)")
def test_redis_recorder_through_ansible(tmp_path):
    with redis_drill_lab() as lab:
        (tmp_path / "play.yml").write_text(PLAY)
        extra = {
            "master_name": lab.master_name,
            "sentinel_host": lab.address("sentinel")[0],
            "sentinel_port": lab.address("sentinel")[1],
            "master_host": lab.address("master")[0],
            "master_port": lab.address("master")[1],
            "replica_host": lab.address("replica")[0],
            "replica_port": lab.address("replica")[1],
            "password": lab.password,
            "sentinel_password": lab.sentinel_password,
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
    assert lab.password not in proc.stdout
    assert lab.sentinel_password not in proc.stdout

    results = json.loads((tmp_path / "results.json").read_text())
    recorded, good = results["recorded"], results["good"]
    assert recorded["stop_reason"] == "stop_file"
    assert recorded["writes"]["ack"] > 30
    assert recorded["writes"]["error"] == recorded["writes"]["unknown"] == 0
    assert recorded["readback"] == {
        "ok": True,
        "server": MASTER_HOST,
        "ids": recorded["writes"]["ack"],
        "error": None,
        "acked_missing": 0,
    }
    assert recorded["samples"]["m"] > 3
    raw = json.loads(Path(recorded["output"]).read_text())
    assert raw["config"]["kind"] == "redis"
    assert lab.password not in Path(recorded["output"]).read_text()

    assert good["verdict"] == "pass"
    assert good["metrics"]["lost_writes"] == 0
    assert good["metrics"]["new_leader"] == "m"
    for path in good["files"].values():
        assert Path(path).stat().st_size > 0

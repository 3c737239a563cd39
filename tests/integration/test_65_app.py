"""The app behind HAProxy on the suite's fleet, under load (tools/app_load.py).

- /health and /ready answer 200 through the load balancer (lb-1); an item
  written through it reads back the same from every instance (pub/sub
  invalidation).
- A rolling restart (playbooks/app_rolling_restart.yml) under load fails no
  request.
- The PostgreSQL leader killed under load (playbooks/drill_postgres.yml
  -e drill=kill: the leader's whole machine dies, and its app instance with
  it): failures only from the kill on, none later than the breaker's
  recovery plus HAProxy's rise after the new leader; reads go on (a standby
  serves them while there is no primary): failed reads within the zone
  drill's limit (drill_zone_max_app_failed_read_ratio); the instances on the
  surviving machines served throughout without a restart.

The load runs on the box ("the region") and reaches lb-1 over the fleet's
bridges; every address comes from the fixture (lab["addresses"]).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, record_timing
from .drill_helpers import run_playbook

pytestmark = pytest.mark.lab

# The role's ports (app_backend_lb_port, app_backend_port).
LB_PORT = APP_PORT = 8080
# breaker recovery (the role's app_backend_breaker_recovery_s) + HAProxy rise (2 checks, 1 s apart) + slack
AFTER_WINDOW_S = 10 + 2 + 3
DRILLS = REPO / "inventories" / "lab" / "group_vars" / "all" / "drills.yml"


def max_failed_read_ratio() -> float:
    import yaml

    return float(yaml.safe_load(DRILLS.read_text(encoding="utf-8"))["drill_zone_max_app_failed_read_ratio"])


def lb_url(lab: dict) -> str:
    return f"http://{lab['addresses']['lb-1']}:{LB_PORT}"


def playbook_args(lab: dict) -> tuple[dict[str, str], list[str]]:
    """The lab's ansible-playbook selection for tools/app_load.py: its inventory (ANSIBLE_INVENTORY) and its -e vars."""
    env = dict(lab["env"])
    extra: list[str] = []
    args = lab["extra_vars"]
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag == "-i":
            env["ANSIBLE_INVENTORY"] = str(REPO / value)
        else:
            assert flag == "-e", f"unexpected ansible-playbook argument in the lab's extra_vars: {flag} {value}"
            extra.append(value)
    return env, extra


def under_load(lab: dict, tmp_path: Path, playbook: str, *extra: str) -> dict:
    """Run ``playbook`` against the suite's fleet while tools/app_load.py loads the LB at 60 requests/s."""
    env, lab_vars = playbook_args(lab)
    cmd = [sys.executable, str(REPO / "tools" / "app_load.py"), "drill", "--url", lb_url(lab),
           "--out", str(tmp_path), "--rate", "60", "--concurrency", "6", "--items", "50",
           "--tail-s", "5", "--playbook", playbook]  # fmt: skip
    for var in (*lab_vars, *extra):
        cmd += ["-e", var]
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200, check=False)
    name = f"app_under_load_{Path(playbook).stem}_{'_'.join(extra)}_s".replace("=", "_")
    record_timing(name, time.monotonic() - start)
    reports = sorted(tmp_path.glob("app-drill-*.json"))
    assert reports, f"no load report (rc {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result = json.loads(reports[-1].read_text())
    assert result["playbook_rc"] == 0, f"{playbook} failed under load:\n{done.stderr[-4000:]}"
    return result


def call(url: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, json.loads(resp.read())


def find_key(node: Any, key: str) -> Any:
    """The first value of ``key`` anywhere in a JSON document (the drill report nests its context)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if key in item:
                return item[key]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def test_health_ready_and_items_through_the_load_balancer(lab):
    status, health = call(f"{lb_url(lab)}/health")
    assert status == 200 and health["status"] == "ok"
    status, ready = call(f"{lb_url(lab)}/ready")
    assert status == 200 and ready["status"] == "ready", ready
    status, item = call(f"{lb_url(lab)}/items", "POST", {"name": "through-the-lb", "data": {"v": 1}})
    assert status == 201
    for _ in range(3):  # every instance caches it in its local tier
        assert call(f"{lb_url(lab)}/items/{item['id']}")[1]["name"] == "through-the-lb"
    status, _ = call(f"{lb_url(lab)}/items/{item['id']}", "PUT", {"name": "renamed", "data": {"v": 2}})
    assert status == 200
    # round robin over the three instances: the invalidation reached each of them
    seen = {call(f"{lb_url(lab)}/items/{item['id']}")[1]["name"] for _ in range(6)}
    assert seen == {"renamed"}


def test_rolling_restart_under_load_fails_no_request(lab, tmp_path):
    result = under_load(lab, tmp_path, "playbooks/app_rolling_restart.yml")
    print(json.dumps({k: result[k] for k in ("requests", "failures", "summary", "load_window")}))
    assert result["requests"] > 100, result
    assert result["failures"] == 0, json.dumps(result, indent=2)


def test_postgres_leader_kill_under_load(lab, tmp_path):
    started = time.time()
    result = under_load(lab, tmp_path, "playbooks/drill_postgres.yml", "drill=kill")
    keys = ("requests", "failures", "failures_5xx", "failures_transport", "failure_first", "failure_last",
            "failure_span_s", "failover_window", "failures_before_window", "failures_after_window",
            "failures_after_window_s", "drill_report")  # fmt: skip
    summary = json.dumps({k: result[k] for k in keys}, indent=2)
    print(summary)
    assert result["failover_window"]["seconds"] is not None, summary
    assert result["failures_before_window"] == 0, summary
    assert result["failures_after_window_s"] <= AFTER_WINDOW_S, summary
    reads = result["reads"]["requests"]
    assert reads > 100 and result["failed_reads"] / reads <= max_failed_read_ratio(), (result["reads"], summary)
    # The old leader's machine died with its app instance (it booted again); the
    # instances on the other machines served before, during and after: no restart.
    killed = find_key(json.loads(Path(result["drill_report"]).read_text()), "old_leader")
    assert killed in lab["nodes"], f"no old leader in the drill's report: {summary}"
    for node in lab["nodes"]:
        status, health = call(f"http://{lab['addresses'][node]}:{APP_PORT}/health")
        assert status == 200, (node, health)
        if node != killed:
            assert health["uptime_s"] >= time.time() - started - 1, (node, health)
    rc, output, _ = run_playbook(lab, "playbooks/verify_app.yml")
    assert rc == 0, output[-3000:]

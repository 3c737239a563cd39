"""The app behind HAProxy on the suite's lab, under load (tools/app_load.py).

- /health and /ready answer 200 through the load balancer; an item written
  through it reads back the same from every instance (pub/sub invalidation).
- A rolling restart (playbooks/app_rolling_restart.yml) under load fails no
  request.
- The PostgreSQL leader killed under load: test_75_zone.py (the zone drill
  kills the leader's whole zone under the same load and checks that the app
  fails only inside the failover window and that no surviving instance
  restarted); tools/app_load.py drill runs the single-service drills under
  load by hand (docs/drills.md).

About 1.5 minutes on the lab.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import REPO, record_timing

pytestmark = pytest.mark.lab


def lb_url(lab: dict) -> str:
    return f"http://{lab['net']}.30:8080"


def under_load(lab: dict, tmp_path: Path, playbook: str, *extra: str) -> dict:
    """Run ``playbook`` against the suite's lab while tools/app_load.py loads the LB at 60 requests/s."""
    cmd = [sys.executable, str(REPO / "tools" / "app_load.py"), "drill", "--url", lb_url(lab),
           "--out", str(tmp_path), "--rate", "60", "--concurrency", "6", "--items", "50",
           "--tail-s", "5", "--playbook", playbook]  # fmt: skip
    for var in (*lab["extra_vars"][1::2], *extra):
        cmd += ["-e", var]
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, env=lab["env"], capture_output=True, text=True, timeout=900, check=False)
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
    assert result["requests"] > 100, result
    assert result["failures"] == 0, json.dumps(result, indent=2)

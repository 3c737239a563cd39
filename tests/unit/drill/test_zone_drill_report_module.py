"""The zone_drill_report module end to end, as the playbook calls it: files
in, the report out, every input the playbook passes reaching the report
(the SLO's alert and the app's write grace were once dropped on the way)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import failover_timeline
from test_zone_report import KILL, SETTLE, SLO, T0, app_load, notification

ROOT = Path(__file__).resolve().parents[3]
MODULE = ROOT / "plugins" / "modules" / "zone_drill_report.py"


def test_the_module_passes_every_input_to_the_report(tmp_path: Path) -> None:
    files = {"postgres": failover_timeline().raw(), "redis": failover_timeline().raw(), "app": app_load()}
    for name, doc in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    fired = notification(170.0, "firing", "ErrorBudgetBurnFast", "")
    (tmp_path / "notifications.jsonl").write_text(json.dumps(fired) + "\n")
    args = {
        "zone": "a", "mode": "kill", "t0_wall": T0, "report_dir": str(tmp_path / "out"),
        "services": {name: {"raw": str(tmp_path / f"{name}.json"), "thresholds": {}} for name in ("postgres", "redis")},
        "app": {"load": str(tmp_path / "app.json"), "settle_s": SETTLE, "write_grace_s": 2},
        "alerts": {"notifications": str(tmp_path / "notifications.jsonl"), "since": T0, "zone_nodes": ["node-a"],
                   "expected": [], "may_outlive": ["ErrorBudgetBurnFast"], "slo": SLO, "until": T0 + 300},
        "context": {"disrupt_start": KILL, "healthy_at": {"app": T0 + 12.0}},
        "thresholds": {"max_app_failed_read_ratio": 0.001},
        "fail_on_violation": False,
    }  # fmt: skip
    (tmp_path / "args.json").write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    (tmp_path / "out").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "collections")}
    done = subprocess.run(
        [sys.executable, str(MODULE), str(tmp_path / "args.json")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    result = json.loads(done.stdout)
    assert not result.get("failed"), result
    report = json.loads(Path(result["files"]["json"]).read_text())
    assert report["alerts"]["slo"]["fired_t"] == 170.0 and report["alerts"]["slo"]["ok"]
    app = report["services"]["app"]["metrics"]
    assert app["write_gap_t"][1] - app["write_gap_t"][0] == pytest.approx(3.02 + 2)  # the grace reached the report
    assert [v["threshold"] for v in report["violations"]] == ["max_app_failed_read_ratio"]

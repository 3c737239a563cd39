"""The zone outage drill on the suite's fleet (playbooks/drill_zone.yml), kill mode.

Zone a dies whole: its machine, node-a, is killed as in a power loss (etcd,
Patroni and PostgreSQL, Redis and Sentinel, the app, the exporters and the
machine's network go at once) with the PostgreSQL leader and the Redis master
placed there first (the worst case), while both writers and the app load run
on the box; the heal boots the machine again and waits for its services. The
pass conditions of the issue, read from the drill's JSON report and checked
here as well as by the drill's own verdict:

- no acknowledged write lost (PostgreSQL, Redis), no split brain anywhere;
- the app's failures (5xx or no answer) only inside the failover window, none
  before, none after; the surviving instances never restarted;
- the stack healthy on the two other zones within its limit, verify.yml
  passing on them;
- NodeDown notified for node-a and resolved, nothing else about node-a
  notified (inhibited), nothing left firing;
- everything rejoined after the heal; iptables as it was on the box and on
  every machine.

This drill also covers what test_65 (the PostgreSQL leader killed under load)
and test_60 (the Redis master killed) ran before: both happen here, under the
same load, with stricter windows. About 4.5 minutes (NodeDown needs 2 min).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import NODES, record_timing
from .drill_helpers import fleet_iptables, run_drill, wait_healthy, wait_redis_healthy

pytestmark = pytest.mark.lab


def uptime(lab: dict, node: str) -> float:
    with urllib.request.urlopen(f"http://{lab['addresses'][node]}:8080/health", timeout=5) as response:
        return float(json.loads(response.read())["uptime_s"])


def our_iptables(lab: dict) -> dict[str, list[str]]:
    """fleet_iptables as the drill compares it: without the box's rules of other fleets (they come and
    go with those fleets), and without tables that hold nothing but empty built-in chains that accept
    (a partition's heal leaves the filter table it created, empty; a fresh boot has none)."""
    others = re.compile(rf"HSFLEET-(?!{re.escape(lab['name'].upper())}\b)")
    out: dict[str, list[str]] = {}
    for host, rules in fleet_iptables(lab).items():
        kept: list[str] = []
        table: list[str] = []
        for line in (r for r in rules if not others.search(r)):
            if line.startswith("*"):
                table = [line]
            elif line == "COMMIT":
                if any(not re.match(r":[A-Z]+ ACCEPT ", t) for t in table[1:]):
                    kept += [*table, line]
                table = []
            elif table:
                table.append(line)
            else:
                kept.append(line)
        out[host] = kept
    return out


def test_zone_kill_with_the_primaries_in_the_zone(lab, tmp_path: Path):
    wait_healthy(lab)
    wait_redis_healthy(lab)
    rules_before = our_iptables(lab)
    started = time.time()

    run = run_drill(lab, "zone", tmp_path, "-e", "zone=a", "-e", "mode=kill", playbook="drill_zone.yml", timeout=900)
    record_timing("drill_zone_kill_s", run.seconds)

    reports = sorted(tmp_path.glob("zone-a-kill-*.json"))
    assert reports, f"no zone report (rc {run.rc}):\n{run.tail()}"
    report = json.loads(reports[-1].read_text())
    stack, services, alerts, ctx = report["stack"], report["services"], report["alerts"], report["context"]
    pg, redis, app = services["postgres"]["metrics"], services["redis"]["metrics"], services["app"]["metrics"]
    summary = json.dumps({"stack": stack, "violations": report["violations"], "alerts": alerts,
                          "pg": {k: pg[k] for k in ("write_gap_s", "lost_writes", "split_brain")},
                          "redis": {k: redis[k] for k in ("write_gap_s", "lost_writes", "split_brain")},
                          "app": {k: v for k, v in app.items() if k != "summary"}}, indent=1)  # fmt: skip
    assert run.rc == 0, f"{summary}\n{run.tail()}"
    assert report["verdict"] == "pass" and report["violations"] == [], summary

    # the worst case, and the report says so
    assert ctx["primaries_in_zone"] is True and ctx["zone_nodes"] == ["node-a"], ctx
    assert ctx["postgres_after"].startswith("leader node-") and "node-a" not in ctx["postgres_after"].split(",")[0]
    # nothing acknowledged lost, no two primaries
    for name, m in (("postgres", pg), ("redis", redis)):
        assert m["lost_writes"] == 0 and not m["split_brain"], (name, summary)
        assert m["write_gap_s"] <= services[name]["thresholds"]["max_write_gap_s"], (name, summary)
        assert m["writes"]["ack"] > 1000, (name, m["writes"])
    # the app: failures only inside the window (the outage was seen: some inside)
    assert app["requests"] > 1000 and app["failures"] > 0, summary
    assert app["failures_before_window"] == 0 and app["failures_after_window"] == 0, summary
    assert app["last_failure_t"] <= app["window_end_t"], summary
    # the stack on two zones, then whole again
    assert stack["healthy_s"] <= report["thresholds"]["max_healthy_s"], summary
    assert stack["verify"] == "pass", summary
    assert set(stack["rejoin_by_service_s"]) == {"etcd", "postgres", "redis", "app"}, summary
    assert stack["rejoin_s"] <= report["thresholds"]["max_rejoin_s"], summary
    # alerts: NodeDown for node-a, resolved; nothing else about node-a; nothing left
    notified = {(a["alert"], a["where"]): a for a in alerts["notified"]}
    assert notified[("NodeDown", "node-a")]["resolved_t"] is not None, summary
    assert alerts["not_inhibited"] == [] and alerts["still_firing"] == [] and alerts["unresolved"] == [], summary

    # the surviving app instances served throughout: no restart
    for node in NODES:
        if node != "node-a":
            assert uptime(lab, node) >= time.time() - started - 1, node
    assert our_iptables(lab) == rules_before
    wait_healthy(lab)
    wait_redis_healthy(lab)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["-e", "zone=q", "-e", "mode=kill"], "zone is 'q' (one of the inventory's zones: a, b, c)"),
        (["-e", "zone=a", "-e", "mode=explode"], "mode is 'explode' (on hosts: one of kill, freeze, partition)"),
        # every node in zone a: losing it loses every quorum
        (["-e", "zone=a", "-e", "mode=kill", "-e", "ha_zone=a"], "zone a holds 3 of the 3 members of etcd_cluster"),
    ],
    ids=["unknown-zone", "unknown-mode", "zone-holds-the-quorum"],
)
def test_bad_zone_drill_input_is_refused_before_anything_changes(lab, tmp_path: Path, extra, words):
    rules_before = our_iptables(lab)
    run = run_drill(lab, "zone", tmp_path, *extra, playbook="drill_zone.yml", timeout=300)
    assert run.rc != 0 and words in " ".join(run.output.split()), run.tail()
    assert not list(tmp_path.glob("*.json")) and not (tmp_path / "raw").exists()
    assert our_iptables(lab) == rules_before
    wait_healthy(lab, timeout=10)

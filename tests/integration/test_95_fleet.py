"""The lab as a fleet of real machines: boot, deploy over SSH, fail over, rerun, destroy.

Runs on its own fleet (``hsit`` on 198.19.0.0/16, HASTACK_IT_FLEET_NAME /
HASTACK_IT_FLEET_NET move it), with the lab's inventory (inventories/lab):
five Debian machines under systemd-nspawn, each its own systemd, sshd, disk
and network namespace, reached over SSH. After the loopback lab's tests
(test_90 has destroyed that lab), so the two never share the box's CPU.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, PlaybookRun, record_timing, run_playbook, tail

pytestmark = pytest.mark.lab

FLEET = os.environ.get("HASTACK_IT_FLEET_NAME", "hsit")
FLEET_NET = os.environ.get("HASTACK_IT_FLEET_NET", "198.19")
FLEET_ARGS = ["-i", "inventories/lab", "-e", f"fleet_name={FLEET}", "-e", f"fleet_net={FLEET_NET}"]
STATE = Path(f"/var/lib/hastack-fleet/{FLEET}")
NODES = {"node-a": f"{FLEET_NET}.1.11", "node-b": f"{FLEET_NET}.2.12", "node-c": f"{FLEET_NET}.3.13"}
MACHINES = {**NODES, "mon": f"{FLEET_NET}.0.20", "lb-1": f"{FLEET_NET}.0.30"}
SECRETS = REPO / "inventories" / "lab" / ".secrets" / FLEET


def fleet_playbook(playbook: str, *args: str, timeout: float = 1800) -> PlaybookRun:
    return run_playbook(playbook, *FLEET_ARGS, *args, timeout=timeout, lab=False)


def ssh(host: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(STATE / "ssh" / "id_ed25519"),
            "-o",
            f"UserKnownHostsFile={STATE / 'ssh' / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            f"root@{MACHINES[host]}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cluster(node: str = "node-a") -> dict:
    with urllib.request.urlopen(f"http://{NODES[node]}:8008/cluster", timeout=5) as resp:
        return json.loads(resp.read())


def leader(exclude: str = "") -> str | None:
    for node in NODES:
        if node == exclude:
            continue
        try:
            for member in cluster(node)["members"]:
                if member["role"] == "leader" and member["state"] == "running" and member["name"] != exclude:
                    return member["name"]
        except OSError:
            continue
    return None


def wait_for_leader(exclude: str = "", not_this: str = "", timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = leader(exclude)
        if found and found != not_this:
            return found
        time.sleep(1)
    raise AssertionError(f"no new leader (other than {not_this or exclude}) within {timeout} s")


def _box_block() -> str:
    """First two octets of the box's first non-loopback IPv4 address: a /16 the fleet must refuse."""
    addrs = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout)
    for link in addrs:
        for info in link.get("addr_info", []):
            if link["ifname"] != "lo" and info.get("family") == "inet":
                a, b = info["local"].split(".")[:2]
                return f"{a}.{b}"
    raise AssertionError("the box has no IPv4 address besides loopback")


def wait_for_healthy(timeout: float = 180) -> dict:
    """Until one leader runs and every other member streams, one of them the sync standby."""
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        for node in NODES:
            try:
                last = cluster(node)
                break
            except OSError:
                continue
        members = last.get("members", [])
        roles = sorted(m["role"] for m in members)
        if roles == ["leader", "replica", "sync_standby"] and all(
            m["state"] in ("running", "streaming") for m in members
        ):
            return last
        time.sleep(1)
    raise AssertionError(f"the cluster is not healthy within {timeout} s: {last}")


def box_state() -> dict:
    """What the fleet changes on the box, to compare before and after."""
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout)
    rules = {
        table: subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True, check=True).stdout
        for table in ("filter", "nat")
    }
    ours = [
        link["ifname"]
        for link in links
        if link["ifname"].startswith(f"{FLEET}-") or link.get("master", "").startswith(f"{FLEET}-")
    ]
    return {
        "links": ours,
        "rules": rules,
        "mounts": sorted(line for line in Path("/proc/mounts").read_text().splitlines() if str(STATE) in line),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        "routes": subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout,
        "nspawn": subprocess.run(
            ["pgrep", "-f", "--", f"--machine={FLEET}-"], capture_output=True, text=True, check=False
        ).stdout,
    }


@pytest.fixture(scope="module")
def fleet() -> Iterator[dict]:
    if os.geteuid() != 0:
        pytest.skip("the fleet boots machines and bridges: run the suite as root")
    if STATE.exists():  # an aborted run's fleet
        leftover = fleet_playbook("playbooks/fleet_destroy.yml")
        assert leftover.rc == 0, f"fleet_destroy.yml failed on an earlier run's fleet:\n{tail(leftover)}"
    before = box_state()
    boot = fleet_playbook("playbooks/fleet.yml")
    record_timing("fleet_boot_s", boot.seconds)
    assert boot.rc == 0, f"fleet.yml failed:\n{tail(boot)}"
    yield {"before": before, "boot": boot}
    if STATE.exists():  # test_fleet_destroy_leaves_no_trace destroys it; this is for a run cut short
        fleet_playbook("playbooks/fleet_destroy.yml")


def test_bad_fleet_inventories_stop_before_anything_starts():
    """Refused in preflight, naming the variable; nothing of that fleet appears on the box."""
    bad = ["-i", "inventories/lab", "-e", "fleet_name=hsbad", "-e", "fleet_net=198.21"]
    cases = [
        # the box's own network (this box's address is in 192.0.2.0/24 on CI and here; any box: its eth0's /16)
        (["-e", f"fleet_net={_box_block()}"], f"fleet_network {_box_block()}.0.0/16 overlaps the box's own network"),
        (["-e", '{"fleet_zones": ["a", "b", "c", "d"]}'], "fleet_zones lists ['d'] but no machine has that ha_zone"),
        (["-e", "ha_address=198.21.1.11"], "rule: one address per machine"),
    ]
    for extra, message in cases:
        run = run_playbook("playbooks/fleet.yml", *bad, *extra, lab=False)
        assert run.rc != 0, f"fleet.yml accepted {extra}"
        assert message in run.output, tail(run)
        assert not Path("/var/lib/hastack-fleet/hsbad").exists()
        assert "hsbad-" not in subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout


def test_fleet_boots_real_machines_and_a_rerun_changes_nothing(fleet):
    for host in MACHINES:
        state = ssh(host, "systemctl is-system-running; hostname; cat /proc/1/comm")
        lines = state.stdout.split()
        assert lines[:3] == ["running", host, "systemd"], f"{host}: {state.stdout} {state.stderr}"
    again = fleet_playbook("playbooks/fleet.yml")
    assert again.rc == 0 and again.changed_total() == 0, tail(again)
    # each machine its own network namespace: node-a's iptables are not the box's
    assert ssh("node-a", "iptables -S | grep -c HSFLEET || true").stdout.strip() == "0"


def test_site_deploys_over_ssh_and_verifies(fleet):
    deploy = fleet_playbook("site.yml")
    record_timing("fleet_site_yml_s", deploy.seconds)
    assert deploy.rc == 0, f"site.yml failed on the fleet:\n{tail(deploy)}"
    assert "Assert the cluster is healthy" in deploy.output
    roles = sorted(m["role"] for m in cluster()["members"])
    assert roles == ["leader", "replica", "sync_standby"]


def test_second_site_run_changes_nothing(fleet):
    rerun = fleet_playbook("site.yml")
    record_timing("fleet_idempotent_rerun_s", rerun.seconds)
    assert rerun.rc == 0, tail(rerun)
    changed = {host: r["changed"] for host, r in rerun.recap.items() if r["changed"]}
    assert changed == {}, f"a second site.yml run changed something: {changed}\n{tail(rerun, 120)}"


def test_the_production_path_runs(fleet):
    for node in NODES:
        units = ssh(
            node,
            "systemctl is-active hastack-patroni; systemctl is-enabled postgresql@15-main;"
            " systemctl is-active postgresql@15-main; pgrep -c supervisord || true",
        ).stdout.split()
        assert units == ["active", "disabled", "inactive", "0"], f"{node}: {units}"
        hba = ssh(node, "cat /var/lib/hastack/hastack/postgresql/15/main/pg_hba.conf").stdout
        assert "127.0.0.0/8" not in hba, f"{node}: pg_hba allows the loopback /8"
        for other in NODES.values():
            assert f"{other}/32" in hba, f"{node}: pg_hba has no line for member {other}/32"


def _patroni_auth() -> str:
    password = (SECRETS / "patroni_restapi").read_text().split()[0]
    return "Basic " + base64.b64encode(f"patroni:{password}".encode()).decode()


def test_switchover_then_machine_kill_then_rerun(fleet):
    old = wait_for_leader()
    request = urllib.request.Request(
        f"http://{NODES[old]}:8008/switchover",
        data=json.dumps({"leader": old}).encode(),
        headers={"Content-Type": "application/json", "Authorization": _patroni_auth()},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        assert resp.status == 200
    new = wait_for_leader(not_this=old)
    # A second failure once the switchover has settled (the old leader streams
    # again and a sync standby is named). Killed at once, no member may be
    # electable yet: synchronous mode promotes only the sync standby.
    wait_for_healthy()

    killed = fleet_playbook("playbooks/fleet_kill.yml", "-e", json.dumps({"fleet_kill": [new]}))
    assert killed.rc == 0, tail(killed)
    start = time.monotonic()
    survivor = wait_for_leader(exclude=new, timeout=120)
    record_timing("fleet_kill_new_leader_s", time.monotonic() - start)
    assert survivor != new

    reboot = fleet_playbook("playbooks/fleet.yml")
    assert reboot.rc == 0, tail(reboot)
    rerun = fleet_playbook("site.yml")
    record_timing("fleet_rerun_after_failover_s", rerun.seconds)
    assert rerun.rc == 0, f"site.yml after a switchover and a machine kill:\n{tail(rerun)}"
    assert "Assert the cluster is healthy" in rerun.output
    members = {m["name"]: m for m in cluster(survivor)["members"]}
    assert set(members) == set(NODES) and all(m["state"] in ("running", "streaming") for m in members.values())


def test_fleet_destroy_leaves_no_trace(fleet):
    run = fleet_playbook("playbooks/fleet_destroy.yml")
    record_timing("fleet_destroy_s", run.seconds)
    assert run.rc == 0, tail(run)
    assert not STATE.exists()
    assert box_state() == fleet["before"]
    again = fleet_playbook("playbooks/fleet_destroy.yml")
    assert again.rc == 0 and again.changed_total() == 0, again.recap

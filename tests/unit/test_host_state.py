"""playbooks/files/host_state.sh: what a drill compares before and after.

Run inside a network namespace of its own (root, as the suite runs), so the
box's own links and rules are neither read nor touched: each change a fault
could leave behind (a link, a route, a queueing discipline, an iptables
rule, a sysctl) shows in the snapshot, and undoing it gives the first
snapshot back, line for line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "playbooks" / "files" / "host_state.sh"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("iptables-save") is None,
    reason="needs root, iproute2 and iptables (the suite runs as root)",
)


@pytest.fixture
def netns():
    name = f"hsqt{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_ns(ns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True, text=True).stdout


def snapshot(ns: str, pattern: str | None = None) -> list[str]:
    """The script's lines without iptables-save's comments (they carry the time), as the drills read it."""
    out = in_ns(ns, "sh", str(SCRIPT), *([pattern] if pattern else [])).splitlines()
    return [line for line in out if not line.startswith("#")]


def test_every_change_a_fault_could_leave_shows_and_undoing_it_restores_the_snapshot(netns):
    in_ns(netns, "ip", "link", "add", "hsq-a", "type", "bridge")
    in_ns(netns, "ip", "link", "set", "hsq-a", "up")
    in_ns(netns, "ip", "addr", "add", "198.18.250.1/24", "dev", "hsq-a")
    # The filter table exists from the first rule on (a partition's, healed):
    # the drills count an empty table as none; here it is there from the start.
    in_ns(netns, "iptables", "-w", "-A", "INPUT", "-j", "ACCEPT")
    in_ns(netns, "iptables", "-w", "-F", "INPUT")
    forward = in_ns(netns, "sysctl", "-n", "net.ipv4.ip_forward").strip()
    flipped = "0" if forward == "1" else "1"
    before = snapshot(netns)
    assert "link hsq-a up" in before
    assert any(line.startswith("route 198.18.250.0/24 dev hsq-a") for line in before), before
    assert any(line.startswith("qdisc noqueue") and "dev hsq-a" in line for line in before), before

    changes = [
        (["tc", "qdisc", "add", "dev", "hsq-a", "root", "pfifo"], ["tc", "qdisc", "del", "dev", "hsq-a", "root"]),
        (["ip", "route", "add", "198.18.251.0/24", "dev", "hsq-a"], ["ip", "route", "del", "198.18.251.0/24"]),
        (["ip", "link", "add", "hsq-b", "type", "bridge"], ["ip", "link", "del", "hsq-b"]),
        (["ip", "link", "set", "hsq-a", "down"], ["ip", "link", "set", "hsq-a", "up"]),
        (["iptables", "-w", "-A", "INPUT", "-s", "198.18.250.9", "-j", "DROP"], ["iptables", "-w", "-F", "INPUT"]),
        (["sysctl", "-qw", f"net.ipv4.ip_forward={flipped}"], ["sysctl", "-qw", f"net.ipv4.ip_forward={forward}"]),
    ]
    for do, undo in changes:
        in_ns(netns, *do)
        during = snapshot(netns)
        assert during != before, f"{' '.join(do)} does not show in the snapshot"
        in_ns(netns, *undo)
        assert snapshot(netns) == before, f"undoing {' '.join(do)} does not give the first snapshot back"


def test_the_pattern_keeps_other_links_out(netns):
    in_ns(netns, "ip", "link", "add", "hsq-a", "type", "bridge")
    in_ns(netns, "ip", "link", "add", "other0", "type", "bridge")
    lines = snapshot(netns, "^hsq-")
    assert "link hsq-a down" in lines
    assert not [line for line in lines if "other0" in line or " lo" in line]

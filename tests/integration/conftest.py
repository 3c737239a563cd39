"""Integration fixtures: the suite's own fleet of real machines.

The suite deploys the lab's inventory (inventories/lab) on a fleet of its own:
``hsit`` on 198.19.0.0/20, five Debian machines under systemd-nspawn (each its
own systemd, sshd, disk and network namespace), reached over SSH, so it never
collides with a user's lab (``hastack`` on 198.18.0.0/20).
HASTACK_IT_FLEET_NAME / HASTACK_IT_FLEET_NET / HASTACK_IT_FLEET_BASE move it
(an engineer developing one test file while the suite's block is busy); the
defaults are what CI runs.
HASTACK_IT_REUSE=1 uses a fleet that is already up and deployed with those
settings, and leaves it up at the end (developing a drill test: no boot, no
deploy, no destroy).

The fleet is booted and deployed once per session (playbooks/fleet.yml, then
site.yml, verification included); test_90 destroys it and checks that nothing
of it is left on the box.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FLEET = os.environ.get("HASTACK_IT_FLEET_NAME", "hsit")
FLEET_NET = os.environ.get("HASTACK_IT_FLEET_NET", "198.19")
FLEET_BASE = int(os.environ.get("HASTACK_IT_FLEET_BASE", "0"))
REUSE = os.environ.get("HASTACK_IT_REUSE") == "1"
LAB_EXTRA_VARS = [
    "-i",
    "inventories/lab",
    "-e",
    f"fleet_name={FLEET}",
    "-e",
    f"fleet_net={FLEET_NET}",
    "-e",
    f"fleet_base={FLEET_BASE}",
]
STATE = Path(f"/var/lib/hastack-fleet/{FLEET}")
SECRETS = REPO / "inventories" / "lab" / ".secrets" / FLEET
NODES = ("node-a", "node-b", "node-c")
ADDRESSES = {
    "node-a": f"{FLEET_NET}.{FLEET_BASE + 1}.11",
    "node-b": f"{FLEET_NET}.{FLEET_BASE + 2}.12",
    "node-c": f"{FLEET_NET}.{FLEET_BASE + 3}.13",
    "mon": f"{FLEET_NET}.{FLEET_BASE}.20",
    "lb-1": f"{FLEET_NET}.{FLEET_BASE}.30",
}
TIMINGS = REPO / "reports" / "integration-timings.json"

RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.M,
)


@dataclass
class PlaybookRun:
    """One ansible-playbook run: exit code, output, recap and duration."""

    args: list[str]
    rc: int
    output: str
    seconds: float
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    def changed_total(self) -> int:
        return sum(host["changed"] for host in self.recap.values())


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_playbook(playbook: str, *args: str, timeout: float = 1500, lab: bool = True) -> PlaybookRun:
    """Run a playbook from the repo root against the suite's fleet (``lab=False``: only ``args``)."""
    cmd = ["ansible-playbook", playbook, *(LAB_EXTRA_VARS if lab else []), *args]
    start = time.monotonic()
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = proc.stdout + proc.stderr
    recap = {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")} for m in RECAP_RE.finditer(output)
    }
    return PlaybookRun(cmd, proc.returncode, output, time.monotonic() - start, recap)


def record_timing(name: str, seconds: float) -> None:
    """Keep the run times the closing notes quote (reports/ is git-ignored)."""
    TIMINGS.parent.mkdir(exist_ok=True)
    data = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    data[name] = round(seconds, 1)
    TIMINGS.write_text(json.dumps(data, indent=2, sort_keys=True))


def tail(run: PlaybookRun, lines: int = 60) -> str:
    return "\n".join(run.output.splitlines()[-lines:])


def ssh(host: str, command: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``command`` as root on a machine of the suite's fleet, as any SSH client would."""
    done = subprocess.run(
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
            f"root@{ADDRESSES[host]}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert done.returncode == 0, f"{host}: {command!r} failed ({done.returncode}): {done.stderr}"
    return done


def box_state() -> dict:
    """What the suite's fleet changes on the box: links, iptables, mounts, ip_forward, routes, nspawn processes.

    Other fleets on the box (a user's lab, molecule's) are left out: their
    bridges, routes and HSFLEET-<NAME> chains come and go on their own.
    """
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout)
    others = {
        link["ifname"]
        for link in links
        if re.fullmatch(r"[a-z0-9]+-(region|[a-z])", link["ifname"]) and not link["ifname"].startswith(f"{FLEET}-")
    }
    foreign_chain = re.compile(rf"HSFLEET-(?!{re.escape(FLEET.upper())}\b)")
    rules = {
        table: [
            line
            for line in subprocess.run(
                ["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True, check=True
            ).stdout.splitlines()
            if not foreign_chain.search(line)
        ]
        for table in ("filter", "nat")
    }
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout.splitlines()
    return {
        "links": [
            link["ifname"]
            for link in links
            if link["ifname"].startswith(f"{FLEET}-") or link.get("master", "").startswith(f"{FLEET}-")
        ],
        "rules": rules,
        "mounts": sorted(line for line in Path("/proc/mounts").read_text().splitlines() if str(STATE) in line),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        "routes": [line for line in routes if not any(f" dev {other} " in f"{line} " for other in others)],
        "nspawn": subprocess.run(
            ["pgrep", "-f", "--", f"--machine={FLEET}-"], capture_output=True, text=True, check=False
        ).stdout,
    }


@pytest.fixture(scope="session")
def lab() -> Iterator[dict]:
    """Boot the suite's fleet and deploy it with site.yml (verification included)."""
    if os.geteuid() != 0:
        pytest.skip("the fleet boots machines and bridges: run the suite as root")
    boot = deploy = None
    before: dict = {}
    if not REUSE:
        if STATE.exists():  # an aborted run's fleet
            leftover = run_playbook("playbooks/fleet_destroy.yml")
            assert leftover.rc == 0, f"fleet_destroy.yml failed on an earlier run's fleet:\n{tail(leftover)}"
        before = box_state()
        boot = run_playbook("playbooks/fleet.yml")
        record_timing("fleet_boot_s", boot.seconds)
        assert boot.rc == 0, f"fleet.yml failed:\n{tail(boot)}"
        deploy = run_playbook("site.yml")
        record_timing("deploy_site_yml_s", deploy.seconds)
        assert deploy.rc == 0, f"site.yml failed on the suite's fleet:\n{tail(deploy)}"
    yield {
        "extra_vars": list(LAB_EXTRA_VARS),
        "env": ansible_env(),
        "name": FLEET,
        "net": FLEET_NET,
        "nodes": NODES,
        "addresses": dict(ADDRESSES),
        "secrets": SECRETS,
        "before": before,
        "boot": boot,
        "deploy": deploy,
        "reuse": REUSE,
    }
    if not REUSE and STATE.exists():  # test_90 destroys the fleet and checks it; this is for a run cut short
        destroy = run_playbook("playbooks/fleet_destroy.yml")
        assert destroy.rc == 0, f"fleet_destroy.yml failed:\n{tail(destroy)}"

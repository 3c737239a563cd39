"""Integration fixtures: the suite's own lab on 127.44.0.0/24 (lab name hsit).

HASTACK_IT_LAB_NAME / HASTACK_IT_LAB_NET move it elsewhere (an engineer
developing one test file while the suite's block is busy); the defaults are
what CI runs.

The lab is deployed once per session with the real inventory
(inventories/local) and site.yml, overriding only the lab name and address
block, so it never collides with a user's lab on 127.42.0.0/24. It is
destroyed at the end of the session.
"""

from __future__ import annotations

import glob
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
LAB_NAME = os.environ.get("HASTACK_IT_LAB_NAME", "hsit")
LAB_NET = os.environ.get("HASTACK_IT_LAB_NET", "127.44.0")
LAB_EXTRA_VARS = ["-e", f"ha_lab_name={LAB_NAME}", "-e", f"ha_lab_net={LAB_NET}"]
NODES = ("node-a", "node-b", "node-c")
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
    """Run a playbook from the repo root against the suite's loopback lab (``lab=False``: only ``args``)."""
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


def lab_leftovers(name: str = LAB_NAME) -> list[str]:
    """What of the lab ``name`` is on this machine: files, programs, processes, groups, chains.

    Everything lab_destroy.yml removes leaves a trace here; an empty list means
    there is nothing to destroy (a clean CI machine, or after test_90).
    """
    found = [
        path
        for pattern in (
            "/etc/hastack/{}-*",
            "/var/lib/hastack/{}-*",
            "/var/log/hastack/{}-*",
            "/opt/hastack/{}-*",
            "/etc/cron.d/{}-*",
            "/etc/supervisor/conf.d/{}-*",
        )
        for path in glob.glob(pattern.format(name))
    ]

    def lines(*cmd: str) -> list[str]:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False).stdout
        except FileNotFoundError:  # no supervisor or iptables installed yet: nothing of theirs
            return []
        return out.splitlines()

    found += [
        f"supervisord program: {line.split()[0]}"
        for line in lines("supervisorctl", "status")
        if line.startswith(f"{name}-")
    ]
    found += [
        f"process: {line.strip()}"
        for line in lines("ps", "-eo", "args")
        if f"/var/lib/hastack/{name}-" in line or f"/etc/hastack/{name}-" in line
    ]
    found += [f"group: {line.split(':')[0]}" for line in lines("getent", "group") if line.startswith(f"{name}-")]
    chain = f"HASTACK-{name.upper()}-"
    for table in ("filter", "mangle"):
        found += [
            f"iptables {table}: {line}" for line in lines("iptables-save", "-t", table) if line.startswith(f":{chain}")
        ]
    return found


@pytest.fixture(scope="session")
def lab() -> Iterator[dict]:
    """Deploy the suite's lab with site.yml (verification included)."""
    if os.geteuid() != 0:
        pytest.skip("the lab installs packages and services: run the suite as root")
    if lab_leftovers():  # an aborted run's lab; a clean machine skips the minute it costs
        leftovers = run_playbook("playbooks/lab_destroy.yml")
        assert leftovers.rc == 0, f"lab_destroy.yml failed on an earlier run's lab:\n{tail(leftovers)}"
    deploy = run_playbook("site.yml")
    record_timing("deploy_site_yml_s", deploy.seconds)
    assert deploy.rc == 0, f"site.yml failed on the suite's lab:\n{tail(deploy)}"
    yield {
        "extra_vars": list(LAB_EXTRA_VARS),
        "env": ansible_env(),
        "name": LAB_NAME,
        "net": LAB_NET,
        "nodes": NODES,
        "deploy": deploy,
    }
    if lab_leftovers():  # test_90 destroys the lab and checks it; this is for a run cut short
        destroy = run_playbook("playbooks/lab_destroy.yml")
        assert destroy.rc == 0, f"lab_destroy.yml failed:\n{tail(destroy)}"

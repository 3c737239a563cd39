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


def run_playbook(playbook: str, *args: str, timeout: float = 1500) -> PlaybookRun:
    """Run a playbook from the repo root against the suite's lab."""
    cmd = ["ansible-playbook", playbook, *LAB_EXTRA_VARS, *args]
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


@pytest.fixture(scope="session")
def lab() -> Iterator[dict]:
    """Deploy the suite's lab with site.yml (verification included)."""
    if os.geteuid() != 0:
        pytest.skip("the lab installs packages and services: run the suite as root")
    run_playbook("playbooks/lab_destroy.yml")  # leftovers of an aborted run
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
    destroy = run_playbook("playbooks/lab_destroy.yml")
    assert destroy.rc == 0, f"lab_destroy.yml failed:\n{tail(destroy)}"

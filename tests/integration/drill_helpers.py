"""Helpers of the drill tests: run playbooks/drill_postgres.yml or
drill_redis.yml on the suite's lab, read its JSON report, snapshot iptables,
read the Patroni cluster and the Redis/Sentinel deployment.

They rely only on the ``lab`` session fixture's contract: a dict with
``extra_vars`` (the ``-e`` arguments that select the suite's lab) and ``env``
(the environment to run ansible-playbook with).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ansible_collections.hastack.ha.plugins.filter.redis import redis_problems
from ansible_collections.hastack.ha.plugins.module_utils.redis_sentinel import Credentials, Endpoint, fetch_info

from .conftest import ssh

REPO = Path(__file__).resolve().parents[2]
# The Redis master's name: redis_sentinel_master_name's default (the inventory does not set it).
REDIS_MASTER = "hastack"


@dataclass
class DrillRun:
    """One run of drill_postgres.yml: exit code, output, duration, and its report."""

    drill: str
    rc: int
    output: str
    seconds: float
    report: dict[str, Any] | None
    report_path: Path | None

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def lab_var(lab: dict, name: str, default: str | None = None) -> str | None:
    """The value of ``-e name=value`` in the lab's extra vars (the last one wins)."""
    value = default
    for arg in lab.get("extra_vars", []):
        if arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
    return value


def node_addresses(lab: dict) -> list[str]:
    """The data nodes' addresses, in the order of ``lab["nodes"]``."""
    return [lab["addresses"][node] for node in lab["nodes"]]


def run_playbook(lab: dict, playbook: str, *args: str, timeout: float = 600) -> tuple[int, str, float]:
    """Run a playbook from the repo root against the lab; (rc, output, seconds)."""
    cmd = ["ansible-playbook", playbook, *lab.get("extra_vars", []), *args]
    start = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=REPO, env=lab.get("env"), capture_output=True, text=True, timeout=timeout, check=False
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


def run_drill(
    lab: dict, drill: str, report_dir: Path, *args: str, timeout: float = 600, playbook: str = "drill_postgres.yml"
) -> DrillRun:
    """Run one drill, writing its report into report_dir (empty before)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    rc, output, seconds = run_playbook(
        lab,
        f"playbooks/{playbook}",
        "-e",
        f"drill={drill}",
        "-e",
        f"drill_report_dir={report_dir}",
        *args,
        timeout=timeout,
    )
    prefix = "redis-" if playbook == "drill_redis.yml" else ""
    reports = sorted(report_dir.glob(f"{prefix}{drill}-*.json"))
    report = json.loads(reports[-1].read_text()) if reports else None
    return DrillRun(drill, rc, output, seconds, report, reports[-1] if reports else None)


_COUNTERS = re.compile(r"\[\d+:\d+\]")
_DEFAULT_POLICY = re.compile(r"^:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ACCEPT ")


def iptables_rules(host: str | None = None) -> list[str]:
    """``iptables-save`` of the box (or of a machine of the fleet) as ``<table> <line>``, without comments and counters.

    A table with nothing but its built-in chains at policy ACCEPT counts as absent: the first
    iptables call in a machine (a partition, healed) creates the table without changing what passes.
    """
    if host is None:
        out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True, timeout=30).stdout
    else:
        out = ssh(host, "iptables-save", timeout=30, check=True).stdout
    rules, table = [], ""
    for line in out.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif not (line.startswith("#") or line == "COMMIT" or _DEFAULT_POLICY.match(line)):
            rules.append(f"{table} {_COUNTERS.sub('[0:0]', line)}")
    return rules


def fleet_iptables(lab: dict) -> dict[str, list[str]]:
    """The box's and every machine's iptables: a drill must leave all of them as it found them.

    On the box, the chains of other fleets (``HSFLEET-<other name>``) are left out: those fleets
    are booted and destroyed by others while a drill runs.
    """
    own = re.compile(rf"HSFLEET-{re.escape(lab['name'].upper())}( |$)")
    box = [line for line in iptables_rules() if "HSFLEET-" not in line or own.search(line)]
    return {"box": box, **{host: iptables_rules(host) for host in lab["addresses"]}}


def patroni_cluster(lab: dict, timeout: float = 3) -> dict[str, Any] | None:
    """GET /cluster from the first member that answers, or None."""
    for address in node_addresses(lab):
        try:
            with urllib.request.urlopen(f"http://{address}:8008/cluster", timeout=timeout) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError):
            continue
    return None


# The drills' health gate refuses a replica further behind than Patroni's
# maximum_lag_on_failover (the lab keeps the role's default): a replica that
# was just restarted streams before it has caught up (16 MB behind, seen
# once right after test_50's refusal test), so "healthy" here waits for it.
MAX_LAG_BYTES = int(
    yaml.safe_load((REPO / "roles/patroni_postgres/defaults/main.yml").read_text())[
        "patroni_postgres_maximum_lag_on_failover"
    ]
)


def is_healthy(cluster: dict[str, Any] | None, members: int = 3) -> bool:
    """One leader, every other member streaming and caught up, a synchronous standby, one timeline."""
    if not cluster or len(cluster.get("members", [])) != members:
        return False
    roles = [m.get("role") for m in cluster["members"]]
    replicas = [m for m in cluster["members"] if m.get("role") != "leader"]
    streaming = all(m.get("state") == "streaming" for m in replicas)
    caught_up = all(isinstance(m.get("lag"), int) and m["lag"] <= MAX_LAG_BYTES for m in replicas)
    timelines = {m.get("timeline") for m in cluster["members"]}
    return roles.count("leader") == 1 and "sync_standby" in roles and streaming and caught_up and len(timelines) == 1


def wait_healthy(lab: dict, timeout: float = 120) -> dict[str, Any]:
    """Wait until the cluster is healthy; its /cluster answer. Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    cluster = None
    while time.monotonic() < deadline:
        cluster = patroni_cluster(lab)
        if is_healthy(cluster):
            return cluster  # type: ignore[return-value]
        time.sleep(1)
    raise TimeoutError(f"the lab's Patroni cluster is not healthy after {timeout} s: {cluster}")


def redis_info(lab: dict, timeout: float = 2) -> dict[str, Any]:
    """Every sentinel's and every Redis's view (hastack.ha.redis_sentinel_info's data)."""
    secrets = lab["secrets"]
    redis_creds = Credentials(password=(secrets / "redis").read_text().strip())
    sentinel_creds = Credentials(password=(secrets / "redis_sentinel").read_text().strip())
    nodes = list(zip(lab.get("nodes", ("node-a", "node-b", "node-c")), node_addresses(lab), strict=True))
    return fetch_info(
        REDIS_MASTER,
        [Endpoint(address, 26379, node) for node, address in nodes],
        [Endpoint(address, 6379, node) for node, address in nodes],
        redis_creds,
        sentinel_creds,
        timeout,
    )


def wait_redis_healthy(lab: dict, timeout: float = 120) -> dict[str, Any]:
    """Wait until Redis and Sentinel have no problem; the info. Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    problems: list[str] = []
    while time.monotonic() < deadline:
        info = redis_info(lab)
        problems = redis_problems(info)
        if not problems:
            return info
        time.sleep(1)
    raise TimeoutError(f"the lab's Redis is not healthy after {timeout} s: {problems}")

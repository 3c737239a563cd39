"""The lab end to end: deploy + verify (the session fixture), idempotence,
verification that catches a broken member, and bad inventories that stop in
preflight without changing anything."""

from __future__ import annotations

import glob
import hashlib
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest

from .conftest import NODES, record_timing, run_playbook, tail

pytestmark = pytest.mark.lab


def _api(net: str, node_octet: int, path: str) -> dict:
    url = f"http://{net}.{node_octet}:8008{path}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _supervised(prefix: str) -> dict[str, str]:
    out = subprocess.run(["supervisorctl", "status"], capture_output=True, text=True, check=False).stdout
    return {line.split()[0]: " ".join(line.split()[1:4]) for line in out.splitlines() if line.startswith(prefix)}


def _snapshot(lab_name: str, net: str) -> dict:
    """Everything a failed preflight must leave untouched."""
    files = {}
    for pattern in (f"/etc/hastack/{lab_name}-*/**", f"/etc/supervisor/conf.d/{lab_name}-*"):
        for path in sorted(glob.glob(pattern, recursive=True)):
            if not Path(path).is_file():  # the app's and the exporters' directories
                continue
            data = Path(path).read_bytes()
            files[path] = (hashlib.sha256(data).hexdigest(), Path(path).stat().st_mtime_ns)
    return {
        "files": files,
        "programs": _supervised(f"{lab_name}-"),
        "dcs_config": _api(net, 11, "/config"),
    }


def test_deploy_ends_with_a_verified_cluster(lab):
    out = lab["deploy"].output
    assert "Assert the cluster is healthy" in out
    assert "sync standby" in out
    cluster = _api(lab["net"], 11, "/cluster")
    roles = sorted(m["role"] for m in cluster["members"])
    assert roles == ["leader", "replica", "sync_standby"], cluster
    assert {m["name"] for m in cluster["members"]} == set(NODES)


def test_second_run_changes_nothing(lab):
    rerun = run_playbook("site.yml")
    record_timing("idempotent_rerun_s", rerun.seconds)
    assert rerun.rc == 0, tail(rerun)
    assert set(rerun.recap) == {*NODES, "mon", "lb-1"}
    assert rerun.changed_total() == 0, f"second run changed something: {rerun.recap}\n{tail(rerun, 200)}"


def test_services_bind_only_their_node_address(lab):
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    listening = {line.split()[3] for line in out.splitlines()}
    for octet in (11, 12, 13):
        for port in (5432, 8008, 2379, 2380):
            assert f"{lab['net']}.{octet}:{port}" in listening
    for port in (5432, 8008, 2379, 2380):
        assert f"0.0.0.0:{port}" not in listening and f"*:{port}" not in listening


def test_lab_secrets_are_private_files(lab):
    secrets = sorted(Path("inventories/local/.secrets", lab["name"]).glob("*"))
    assert len(secrets) >= 4
    for path in secrets:
        assert path.stat().st_mode & 0o777 == 0o600, path
    tracked = subprocess.run(
        ["git", "ls-files", "inventories/local/.secrets"], capture_output=True, text=True, check=True
    ).stdout
    assert tracked == ""


def test_verify_names_a_stopped_member(lab):
    program = f"{lab['name']}-node-c-patroni"
    subprocess.run(["supervisorctl", "stop", program], check=True, capture_output=True)
    try:
        broken = run_playbook("playbooks/verify.yml", "-e", "verify_patroni_retries=3")
        assert broken.rc != 0
        assert "node-c" in broken.output and "Patroni cluster is not healthy" in broken.output
    finally:
        subprocess.run(["supervisorctl", "start", program], check=True, capture_output=True)
    healed = run_playbook("playbooks/verify.yml", "-e", "verify_patroni_retries=60")
    assert healed.rc == 0, tail(healed)


BAD_INVENTORIES = [
    (["-e", "patroni_postgres_ttl=10"], ["patroni_postgres_ttl", "loop_wait + 2 * retry_timeout <= ttl"]),
    (
        ["-e", "patroni_postgres_retry_timeout=8"],
        ["patroni_postgres_retry_timeout=8", "loop_wait + 2 * retry_timeout <= ttl"],
    ),
    (
        ["-e", "patroni_postgres_synchronous_node_count=3"],
        ["patroni_postgres_synchronous_node_count", "less than the number of members"],
    ),
    (["-e", "ha_platform=openstack"], ["ha_platform", "one of hosts, kubernetes"]),
    (["-e", "etcd_election_timeout_ms=200"], ["etcd_election_timeout_ms", "at least 5 x etcd_heartbeat_interval_ms"]),
]


@pytest.mark.parametrize(("extra", "words"), BAD_INVENTORIES, ids=lambda v: str(v))
def test_bad_inventory_stops_in_preflight_and_changes_nothing(lab, extra, words):
    before = _snapshot(lab["name"], lab["net"])
    run = run_playbook("site.yml", *extra)
    assert run.rc != 0, f"site.yml accepted {extra}"
    for word in words:
        assert word in run.output, f"message for {extra} does not say {word!r}:\n{tail(run)}"
    assert run.changed_total() == 0, run.recap
    assert "PLAY [DCS (etcd)]" not in run.output, "the run went past preflight"
    assert _snapshot(lab["name"], lab["net"]) == before

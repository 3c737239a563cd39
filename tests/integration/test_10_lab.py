"""The lab end to end on the suite's fleet: real machines booted, deployed over
SSH and verified (the session fixture); a second boot and a second deploy
change nothing; the production path runs (systemd, members' /32s in pg_hba,
the packaged cluster off, daemons bound to their own address); verification
names a stopped member; bad inventories stop in preflight without changing
anything, the fleet's own before any machine starts."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest

from .conftest import ADDRESSES, NODES, SECRETS, record_timing, run_playbook, ssh, tail

pytestmark = pytest.mark.lab

# The roles' service names and config directories on the lab (Debian's; the inventory keeps the defaults).
PATRONI = "patroni"
STACK_UNITS = "etcd.service patroni.service redis-server.service redis-sentinel.service 'hastack-*' 'prometheus*'"
# sentinel.conf is Sentinel's to rewrite at any time, so it is left out.
CONFIGS = "/etc/etcd /etc/patroni /etc/pgbackrest.conf /etc/redis /etc/prometheus /etc/haproxy /etc/hastack-app"


def _api(node: str, path: str) -> dict:
    with urllib.request.urlopen(f"http://{ADDRESSES[node]}:8008{path}", timeout=5) as resp:
        return json.loads(resp.read())


def _snapshot() -> dict:
    """Everything a failed preflight must leave untouched: configs, running units, the DCS config."""
    return {
        "files": {
            node: ssh(
                node, f"find {CONFIGS} -type f ! -name sentinel.conf -exec sha256sum {{}} + 2>/dev/null | sort"
            ).stdout
            for node in (*NODES, "mon", "lb-1")
        },
        "units": {
            node: ssh(node, f"systemctl list-units --state=active --no-legend --plain {STACK_UNITS}", check=True).stdout
            for node in NODES
        },
        "dcs_config": _api("node-a", "/config"),
    }


def _box_block() -> tuple[str, int]:
    """The /20 around the box's first non-loopback IPv4 address (first two octets, third's base): one to refuse."""
    addrs = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout)
    for link in addrs:
        for info in link.get("addr_info", []):
            if link["ifname"] != "lo" and info.get("family") == "inet":
                a, b, c = info["local"].split(".")[:3]
                return f"{a}.{b}", int(c) & 0xF0
    raise AssertionError("the box has no IPv4 address besides loopback")


def test_bad_fleet_inventories_stop_before_anything_starts():
    """Refused in preflight, naming the variable; nothing of that fleet appears on the box."""
    bad = ["-i", "inventories/lab", "-e", "fleet_name=hsbad", "-e", "fleet_net=198.19", "-e", "fleet_base=240"]
    box_net, box_base = _box_block()
    cases = [
        (
            ["-e", f"fleet_net={box_net}", "-e", f"fleet_base={box_base}"],
            f"fleet_network {box_net}.{box_base}.0/20 overlaps the box's own network",
        ),
        (["-e", '{"fleet_zones": ["a", "b", "c", "d"]}'], "fleet_zones lists ['d'] but no machine has that ha_zone"),
        (["-e", "ha_address=198.19.241.11"], "rule: one address per machine"),
    ]
    for extra, message in cases:
        run = run_playbook("playbooks/fleet.yml", *bad, *extra, lab=False)
        assert run.rc != 0, f"fleet.yml accepted {extra}"
        assert message in run.output, tail(run)
        assert not Path("/var/lib/hastack-fleet/hsbad").exists()
        assert "hsbad-" not in subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout


def test_fleet_boots_real_machines_and_a_rerun_changes_nothing(lab):
    for host in ADDRESSES:
        state = ssh(host, "systemctl is-system-running; hostname; cat /proc/1/comm")
        assert state.stdout.split()[:3] == ["running", host, "systemd"], f"{host}: {state.stdout} {state.stderr}"
    again = run_playbook("playbooks/fleet.yml")
    assert again.rc == 0 and again.changed_total() == 0, tail(again)
    # each machine its own network namespace: node-a's iptables are not the box's
    assert ssh("node-a", "iptables -S | grep -c HSFLEET || true").stdout.strip() == "0"


def test_deploy_ends_with_a_verified_cluster(lab):
    if lab["deploy"] is not None:  # HASTACK_IT_REUSE: deployed earlier
        assert "Assert the cluster is healthy" in lab["deploy"].output
        assert "sync standby" in lab["deploy"].output
    cluster = _api("node-a", "/cluster")
    roles = sorted(m["role"] for m in cluster["members"])
    assert roles == ["leader", "replica", "sync_standby"], cluster
    assert {m["name"] for m in cluster["members"]} == set(NODES)


def test_second_run_changes_nothing(lab):
    rerun = run_playbook("site.yml")
    record_timing("idempotent_rerun_s", rerun.seconds)
    assert rerun.rc == 0, tail(rerun)
    assert set(rerun.recap) == {*NODES, "mon", "lb-1", "localhost"} or set(rerun.recap) == {*NODES, "mon", "lb-1"}
    changed = {host: r["changed"] for host, r in rerun.recap.items() if r["changed"]}
    assert changed == {}, f"a second site.yml run changed something: {changed}\n{tail(rerun, 200)}"


def test_the_production_path_runs(lab):
    for node in NODES:
        units = ssh(
            node,
            f"systemctl is-active {PATRONI}; systemctl is-enabled {PATRONI}; systemctl is-enabled postgresql@15-main;"
            " systemctl is-active postgresql@15-main; pgrep -c supervisord || true",
        ).stdout.split()
        assert units == ["active", "enabled", "disabled", "inactive", "0"], f"{node}: {units}"
        hba = ssh(node, "cat /var/lib/postgresql/15/hastack/pg_hba.conf", check=True).stdout
        assert "127.0.0.0/8" not in hba, f"{node}: pg_hba allows the loopback /8"
        for other in NODES:
            assert f"{ADDRESSES[other]}/32" in hba, f"{node}: pg_hba has no line for member {other}"


def test_services_bind_only_their_node_address(lab):
    for node in NODES:
        listening = {line.split()[3] for line in ssh(node, "ss -Hltn", check=True).stdout.splitlines()}
        for port in (5432, 8008, 2379, 2380, 6379, 26379):
            assert f"{ADDRESSES[node]}:{port}" in listening, f"{node}: nothing on {ADDRESSES[node]}:{port}"
            assert f"0.0.0.0:{port}" not in listening and f"*:{port}" not in listening, f"{node}: {port} on all"


def test_lab_secrets_are_private_files(lab):
    # passwords, S3 keys and the lab CA's key; the CA's certificate is public
    secrets = sorted(path for path in SECRETS.glob("*") if path.suffix != ".crt")
    assert len(secrets) >= 11
    for path in secrets:
        assert path.stat().st_mode & 0o777 == 0o600, path
    tracked = subprocess.run(
        ["git", "ls-files", "inventories/lab/.secrets"], capture_output=True, text=True, check=True
    ).stdout
    assert tracked == ""


def test_verify_names_a_stopped_member(lab):
    ssh("node-c", f"systemctl stop {PATRONI}", check=True)
    try:
        broken = run_playbook("playbooks/verify.yml", "-e", "verify_patroni_retries=3")
        assert broken.rc != 0
        assert "node-c" in broken.output and "Patroni cluster is not healthy" in broken.output
    finally:
        ssh("node-c", f"systemctl start {PATRONI}", check=True)
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
    before = _snapshot()
    run = run_playbook("site.yml", *extra)
    assert run.rc != 0, f"site.yml accepted {extra}"
    for word in words:
        assert word in run.output, f"message for {extra} does not say {word!r}:\n{tail(run)}"
    assert run.changed_total() == 0, run.recap
    assert "PLAY [DCS (etcd)]" not in run.output, "the run went past preflight"
    assert _snapshot() == before

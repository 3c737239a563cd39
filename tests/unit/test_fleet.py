"""The fleet's plan (fleet_plan), the box-overlap check and pip's settings, with plain calls.

The fleet itself (image, bridges, machines) runs in the integration suite
(tests/integration/test_20_fleet.py); here are the refusals a bad inventory
must meet before any machine starts, each naming the variable and the rule.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.hastack.ha.plugins.filter.fleet import fleet_host_overlaps, fleet_plan
from ansible_collections.hastack.ha.plugins.filter.pip import pip_environment
from ansible_collections.hastack.ha.plugins.module_utils.fleet import Machine

ZONES = ["a", "b", "c"]


def machines(**override: dict) -> list[dict]:
    base = {
        "node-a": {"zone": "a", "address": "198.18.1.11"},
        "node-b": {"zone": "b", "address": "198.18.2.12"},
        "node-c": {"zone": "c", "address": "198.18.3.13"},
        "mon": {"zone": "", "address": "198.18.0.20"},
        "lb-1": {"zone": None, "address": "198.18.0.30"},
    }
    for host, values in override.items():
        base[host.replace("_", "-")] = {**base.get(host.replace("_", "-"), {}), **values}
    return [{"host": host, **values} for host, values in base.items()]


def test_plan_segments_and_machines():
    plan = fleet_plan(machines(), "198.18.0.0/16", "hastack", ZONES)
    assert [s["name"] for s in plan["segments"]] == ["a", "b", "c", "region"]
    seg = {s["name"]: s for s in plan["segments"]}
    assert seg["a"] == {
        "name": "a",
        "bridge": "hastack-a",
        "subnet": "198.18.1.0/24",
        "gateway": "198.18.1.1",
        "prefixlen": 24,
    }
    assert seg["region"]["bridge"] == "hastack-region" and seg["region"]["gateway"] == "198.18.0.1"
    assert all(len(s["bridge"]) <= 15 for s in plan["segments"])
    by_host = {m["host"]: m for m in plan["machines"]}
    assert by_host["mon"]["zone"] == "region" and by_host["lb-1"]["bridge"] == "hastack-region"
    assert by_host["node-b"] == {
        "host": "node-b",
        "machine": "hastack-node-b",
        "zone": "b",
        "address": "198.18.2.12",
        "bridge": "hastack-b",
        "gateway": "198.18.2.1",
        "prefixlen": 24,
    }


@pytest.mark.parametrize(
    ("inventory", "network", "name", "zones", "message"),
    [
        (machines(), "198.18.0.0/16", "Hastack", ZONES, "fleet_name is 'Hastack'; rule: 1-8"),
        (machines(), "198.18.0.0/16", "toolongname", ZONES, "fleet_name is 'toolongname'"),
        (machines(), "198.18.0.1/16", "hastack", ZONES, "fleet_network is '198.18.0.1/16'; rule: an IPv4 network"),
        (machines(), "198.18.0.0/24", "hastack", ZONES, "rule: an IPv4 network of /22 or larger"),
        (machines(), "198.18.0.0/16", "hastack", ["a", "b", "c", "d"], r"fleet_zones lists \['d'\] but no machine"),
        (machines(), "198.18.0.0/16", "hastack", ["a", "a"], "rule: each zone once"),
        (machines(), "198.18.0.0/16", "hastack", ["a", "region"], "and not 'region'"),
        (machines(node_c={"zone": "x"}), "198.18.0.0/16", "hastack", ZONES, "ha_zone of node-c is 'x'; rule: one of"),
        (
            machines(node_c={"address": "198.18.2.12"}),
            "198.18.0.0/16",
            "hastack",
            ZONES,
            "ha_address of node-c is 198.18.2.12, the same as node-b's; rule: one address per machine",
        ),
        (machines(node_c={"address": "10.0.0.5"}), "198.18.0.0/16", "hastack", ZONES, "rule: inside fleet_network"),
        (machines(node_c={"address": "not-an-ip"}), "198.18.0.0/16", "hastack", ZONES, "rule: an IPv4 address"),
        (machines(node_c={"address": "198.18.3.1"}), "198.18.0.0/16", "hastack", ZONES, "is the host's gateway"),
        (
            machines(node_d={"zone": "c", "address": "198.18.4.14"}),
            "198.18.0.0/16",
            "hastack",
            ZONES,
            "rule: all machines of a zone in one /24",
        ),
        (
            machines(node_c={"address": "198.18.2.13"}),
            "198.18.0.0/16",
            "hastack",
            ZONES,
            "zones 'b' and 'c' share 198.18.2.0/24",
        ),
        (
            [*machines(node_a={"address": "198.18.1.11"}), {"host": "node-a", "zone": "a", "address": "198.18.1.99"}],
            "198.18.0.0/16",
            "hastack",
            ZONES,
            "inventory host 'node-a' is listed twice",
        ),
        (
            machines(Node_A={"zone": "a", "address": "198.18.1.12"}),
            "198.18.0.0/16",
            "hastack",
            ZONES,
            "inventory host 'Node-A'",
        ),
        ([], "198.18.0.0/16", "hastack", ZONES, "the fleet has no machine"),
    ],
)
def test_plan_refuses_bad_inventories(inventory, network, name, zones, message):
    with pytest.raises(AnsibleFilterError, match=message):
        fleet_plan(inventory, network, name, zones)


def test_plan_refuses_what_is_not_a_list_of_dicts():
    with pytest.raises(AnsibleFilterError, match="expected a list of dicts"):
        fleet_plan("node-a", "198.18.0.0/16", "hastack", ZONES)


ADDRS = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {
        "ifname": "eth0",
        "addr_info": [
            {"family": "inet", "local": "192.0.2.2", "prefixlen": 24},
            {"family": "inet6", "local": "fd00::2", "prefixlen": 64},
        ],
    },
    {"ifname": "hastack-a", "addr_info": [{"family": "inet", "local": "198.18.1.1", "prefixlen": 24}]},
]
ROUTES = [
    {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
    {"dst": "192.0.2.0/24", "dev": "eth0"},
    {"dst": "10.20.0.0/16", "gateway": "192.0.2.1", "dev": "eth0"},
    {"dst": "198.18.1.0/24", "dev": "hastack-a"},
]


def test_overlaps_name_the_box_network_and_ignore_the_fleet_own_bridges():
    assert fleet_host_overlaps("198.18.0.0/16", ADDRS, ROUTES, ["hastack-a"]) == []
    assert fleet_host_overlaps("198.18.0.0/16", ADDRS, ROUTES) == ["198.18.1.0/24 on hastack-a"]
    assert fleet_host_overlaps("192.0.0.0/16", ADDRS, ROUTES, ["hastack-a"]) == ["192.0.2.0/24 on eth0"]
    assert fleet_host_overlaps("10.20.128.0/22", ADDRS, ROUTES) == ["route 10.20.0.0/16 via eth0"]


def test_overlaps_read_this_box_as_ip_prints_it():
    """The real ``ip -j`` output parses, and the box's own address block is refused."""
    addrs = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout)
    routes = json.loads(subprocess.run(["ip", "-j", "route"], capture_output=True, text=True, check=True).stdout)
    own = [
        info
        for link in addrs
        if link["ifname"] != "lo"
        for info in link.get("addr_info", [])
        if info.get("family") == "inet"
    ]
    assert own, "this box has no IPv4 address besides loopback"
    first = own[0]
    import ipaddress

    block = ipaddress.IPv4Network(f"{first['local']}/22", strict=False)
    assert fleet_host_overlaps(str(block), addrs, routes), f"{block} overlaps {first['local']} but was not refused"


def test_pip_environment():
    assert pip_environment({}) == {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    assert pip_environment(None) == {"PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env = pip_environment(
        {
            "index_url": "https://mirror.example/simple",
            "extra_index_urls": ["https://a.example/simple", "https://b.example/simple"],
            "cert": "/etc/ssl/certs/ca-certificates.crt",
            "proxy": "http://proxy.example:3128",
            "trusted_hosts": "a.example",
        }
    )
    assert env == {
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_INDEX_URL": "https://mirror.example/simple",
        "PIP_EXTRA_INDEX_URL": "https://a.example/simple https://b.example/simple",
        "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
        "PIP_PROXY": "http://proxy.example:3128",
        "PIP_TRUSTED_HOST": "a.example",
    }


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"index": "x"}, r"patroni_postgres_pip has unknown keys \['index'\]"),
        ("https://x", "patroni_postgres_pip must be a dict"),
        ({"cert": ["a"]}, r"patroni_postgres_pip.cert must be a string"),
        ({"extra_index_urls": [""]}, "extra_index_urls must be a list of non-empty strings"),
    ],
)
def test_pip_environment_refuses_bad_settings(settings, message):
    with pytest.raises(AnsibleFilterError, match=message):
        pip_environment(settings, "patroni_postgres_pip")


def test_kill_takes_pid_1_at_once_and_says_when(tmp_path):
    # a stand-in for a machine's nspawn (its cmdline names the machine) with one
    # child, its "PID 1": kill() SIGKILLs that child, then waits until both are gone
    name = "hsunit-kill"
    nspawn = subprocess.Popen(["sh", "-c", "sleep 300; true", "sh", f"--machine={name}"])
    try:
        machine = Machine(name=name, image=tmp_path / "image", state_dir=tmp_path)
        machine.pid_file.write_text(f"{nspawn.pid}\n")
        deadline = time.monotonic() + 10
        while machine.init_pid() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        init = machine.init_pid()
        assert init is not None and machine.nspawn_pid() == nspawn.pid
        before = time.time()
        assert machine.kill() is True
        assert machine.killed_t is not None and before <= machine.killed_t <= time.time()
        assert nspawn.wait(timeout=10) == 0  # its child died, the shell went on and ended
        assert not Path(f"/proc/{init}").exists()
        # nothing runs any more: a second kill changes nothing and keeps no new time
        assert Machine(name=name, image=tmp_path / "image", state_dir=tmp_path).kill() is False
    finally:
        nspawn.kill()
        nspawn.wait()

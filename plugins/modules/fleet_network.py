#!/usr/bin/python
# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fleet_network
short_description: The lab fleet's network on the box - a bridge per zone, routing, netem delay, NAT to the registries
version_added: 0.2.0
description:
  - Runs on the box that hosts the fleet. One Linux bridge per segment (a zone, or the region),
    with the box's address on it as the segment's gateway, so the box routes between zones and a
    zone can be cut off at the box.
  - A C(tc netem) delay on every bridge's egress gives routed traffic (zone to zone, region to
    zone) a cross-zone latency; traffic inside a zone is bridged and not delayed.
  - Machines reach the package registries the box reaches, and nothing else outside the fleet -
    forwarding out of the fleet's block is allowed only to the ports in O(egress_ports)
    (DNS, HTTP, HTTPS) and masqueraded. The rules live in the fleet's own iptables chains
    (C(HSFLEET-<NAME>) in C(filter) and C(nat)), jumped to from C(FORWARD) and C(POSTROUTING).
  - C(net.ipv4.ip_forward) is set to 1; the value found is recorded in O(state_dir) and put back
    by C(state=absent) when no other fleet on the box still records one.
  - C(state=absent) removes the bridges, the chains and the jumps, and restores the sysctl.
author:
  - hastack developers
options:
  name:
    description: The fleet's name (C(fleet_name)); bridges are C(<name>-<segment>).
    type: str
    required: true
  network:
    description: The fleet's address block (CIDR). Required for C(present).
    type: str
  segments:
    description: The segments, as the C(hastack.ha.fleet_plan) filter returns them.
    type: list
    elements: dict
    default: []
  delay_ms:
    description: One-way delay (milliseconds) added on every bridge's egress; 0 for none.
    type: float
    default: 0
  egress_ports:
    description: Destination ports (TCP, and UDP for 53) machines may reach outside the fleet.
    type: list
    elements: int
    default: [53, 80, 443]
  state_dir:
    description: The fleet's state directory (records the sysctl value found).
    type: path
    required: true
  state:
    description: Whether the network is there.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: The fleet's bridges, routing and NAT
  hastack.ha.fleet_network:
    name: hastack
    network: 198.18.0.0/16
    segments: "{{ _fleet_plan.segments }}"
    delay_ms: 0.5
    state_dir: /var/lib/hastack-fleet/hastack
"""

RETURN = r"""
bridges:
  description: The fleet's bridges on the box after the call.
  type: list
  elements: str
  returned: always
"""

import json  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

FORWARD_SYSCTL = Path("/proc/sys/net/ipv4/ip_forward")
SYSCTL_RECORD = "ip_forward.before"
STATE_ROOT_GLOB = "*/" + SYSCTL_RECORD


class NetemMissing(RuntimeError):
    """The kernel cannot delay packets (no sch_netem)."""


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, check=check)


def chain(name: str) -> str:
    return f"HSFLEET-{name.upper()}"


def links() -> dict[str, dict]:
    return {link["ifname"]: link for link in json.loads(run("ip", "-j", "-d", "addr", "show").stdout or "[]")}


def fleet_bridges(name: str) -> list[str]:
    return sorted(
        ifname
        for ifname, link in links().items()
        if ifname.startswith(f"{name}-") and link.get("linkinfo", {}).get("info_kind") == "bridge"
    )


def ensure_bridge(segment: dict, delay_ms: float) -> bool:
    changed = False
    bridge = segment["bridge"]
    current = links().get(bridge)
    if current is None:
        run("ip", "link", "add", bridge, "type", "bridge")
        changed = True
        current = links()[bridge]
    want = f"{segment['gateway']}/{segment['prefixlen']}"
    have = {f"{a['local']}/{a['prefixlen']}" for a in current.get("addr_info", []) if a.get("family") == "inet"}
    if want not in have:
        run("ip", "addr", "add", want, "dev", bridge)
        changed = True
    if "UP" not in current.get("flags", []):
        run("ip", "link", "set", bridge, "up")
        changed = True
    qdisc = run("tc", "qdisc", "show", "dev", bridge, "root").stdout
    if delay_ms > 0:
        wanted = f"delay {delay_ms:g}ms"
        if "netem" not in qdisc or _netem_delay(qdisc) != delay_ms:
            added = run("tc", "qdisc", "replace", "dev", bridge, "root", "netem", *wanted.split(), check=False)
            if added.returncode != 0:
                raise NetemMissing(
                    f"tc netem on {bridge}: {added.stderr.strip()}. This kernel has no netem qdisc "
                    "(CONFIG_NET_SCH_NETEM); set fleet_interzone_delay_ms: 0, or boot a kernel that has it"
                )
            changed = True
    elif "netem" in qdisc:
        run("tc", "qdisc", "del", "dev", bridge, "root")
        changed = True
    return changed


def _netem_delay(qdisc: str) -> float | None:
    words = qdisc.split()
    if "delay" not in words:
        return None
    value = words[words.index("delay") + 1]
    if value.endswith("us"):
        return float(value[:-2]) / 1000
    if value.endswith("ms"):
        return float(value[:-2])
    if value.endswith("s"):
        return float(value[:-1]) * 1000
    return None


def rules(network: str, ports: list[int]) -> dict[str, list[list[str]]]:
    """The fleet's chains: what they hold, as iptables arguments, written as ``iptables -S`` prints them back."""
    fwd = [
        ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        ["-s", network, "-d", network, "-j", "ACCEPT"],
    ]
    port_list = ",".join(str(p) for p in ports)
    fwd += [["-s", network, "-p", "tcp", "-m", "multiport", "--dports", port_list, "-j", "ACCEPT"]]
    if 53 in ports:
        fwd += [["-s", network, "-p", "udp", "-m", "udp", "--dport", "53", "-j", "ACCEPT"]]
    fwd += [["-s", network, "-j", "DROP"], ["-d", network, "-j", "DROP"]]
    nat = [["-s", network, "!", "-d", network, "-j", "MASQUERADE"]]
    return {"filter": fwd, "nat": nat}


HOOKS = {"filter": "FORWARD", "nat": "POSTROUTING"}


def ensure_chains(name: str, network: str, ports: list[int]) -> bool:
    changed = False
    for table, wanted in rules(network, ports).items():
        ch = chain(name)
        if run("iptables", "-w", "-t", table, "-n", "-L", ch, check=False).returncode != 0:
            run("iptables", "-w", "-t", table, "-N", ch)
            changed = True
        current = [
            line.split(None, 2)[2].split() if len(line.split(None, 2)) > 2 else []
            for line in run("iptables", "-w", "-t", table, "-S", ch).stdout.splitlines()
            if line.startswith("-A ")
        ]
        if current != wanted:
            run("iptables", "-w", "-t", table, "-F", ch)
            for rule in wanted:
                run("iptables", "-w", "-t", table, "-A", ch, *rule)
            changed = True
        hook = HOOKS[table]
        jump = ["-s", network, "-j", ch] if table == "nat" else ["-j", ch]
        if run("iptables", "-w", "-t", table, "-C", hook, *jump, check=False).returncode != 0:
            run("iptables", "-w", "-t", table, "-I", hook, "1", *jump)
            changed = True
    return changed


def remove_chains(name: str) -> bool:
    changed = False
    ch = chain(name)
    for table, hook in HOOKS.items():
        for line in run("iptables", "-w", "-t", table, "-S", hook).stdout.splitlines():
            if line.startswith(f"-A {hook} ") and line.endswith(f"-j {ch}"):
                run("iptables", "-w", "-t", table, *(["-D", *line.split()[1:]]))
                changed = True
        if run("iptables", "-w", "-t", table, "-n", "-L", ch, check=False).returncode == 0:
            run("iptables", "-w", "-t", table, "-F", ch)
            run("iptables", "-w", "-t", table, "-X", ch)
            changed = True
    return changed


def ensure_forwarding(state_dir: Path) -> bool:
    record = state_dir / SYSCTL_RECORD
    current = FORWARD_SYSCTL.read_text().strip()
    if not record.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        others = [p for p in state_dir.parent.glob(STATE_ROOT_GLOB) if p != record]
        # another fleet already switched forwarding on: the value found before it is the one to keep
        record.write_text((others[0].read_text().strip() if others else current) + "\n")
    if current != "1":
        FORWARD_SYSCTL.write_text("1\n")
        return True
    return False


def restore_forwarding(state_dir: Path) -> bool:
    record = state_dir / SYSCTL_RECORD
    if not record.exists():
        return False
    before = record.read_text().strip()
    record.unlink()
    others = [p for p in state_dir.parent.glob(STATE_ROOT_GLOB) if p != record]
    if others or FORWARD_SYSCTL.read_text().strip() == before:
        return False
    FORWARD_SYSCTL.write_text(before + "\n")
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "network": {"type": "str"},
            "segments": {"type": "list", "elements": "dict", "default": []},
            "delay_ms": {"type": "float", "default": 0},
            "egress_ports": {"type": "list", "elements": "int", "default": [53, 80, 443]},
            "state_dir": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        required_if=[("state", "present", ("network", "segments"))],
        supports_check_mode=False,
    )
    p = module.params
    state_dir = Path(p["state_dir"])
    try:
        if p["state"] == "present":
            changed = ensure_forwarding(state_dir)
            for segment in p["segments"]:
                changed |= ensure_bridge(segment, p["delay_ms"])
            wanted = {s["bridge"] for s in p["segments"]}
            for stale in set(fleet_bridges(p["name"])) - wanted:
                run("ip", "link", "del", stale)
                changed = True
            changed |= ensure_chains(p["name"], p["network"], p["egress_ports"])
        else:
            changed = remove_chains(p["name"])
            for bridge in fleet_bridges(p["name"]):
                run("ip", "link", "del", bridge)
                changed = True
            changed |= restore_forwarding(state_dir)
    except (OSError, subprocess.CalledProcessError, NetemMissing) as exc:
        detail = getattr(exc, "stderr", "") or ""
        module.fail_json(msg=f"fleet {p['name']} network: {exc} {detail}".strip())
    module.exit_json(changed=changed, bridges=fleet_bridges(p["name"]))


if __name__ == "__main__":
    main()

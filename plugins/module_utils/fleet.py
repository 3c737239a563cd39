# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""The fleet: real Debian machines (systemd-nspawn) on one box, one bridge per zone.

Three parts, used by the ``fleet_plan`` filter and the ``fleet_network`` and
``fleet_machine`` modules:

- ``plan()``: pure. Turns the inventory (each machine's name, zone and address)
  into segments (one bridge and one /24 per zone, plus ``region`` for machines
  without a zone) and machines, or raises ``FleetError`` naming the variable
  and the rule that was broken.
- ``host_overlaps()``: pure. Which of the host's own networks the fleet's block
  overlaps, given ``ip -j addr`` and ``ip -j route`` output.
- ``Machine``: one machine's overlay, files and systemd-nspawn process.

The host's PID 1 need not be systemd: machines run as detached
``systemd-nspawn --boot --register=no --keep-unit`` processes, tracked by a
pid file, so nothing asks the host's D-Bus or machined.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REGION = "region"
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
SEGMENT_RE = re.compile(r"^[a-z0-9]{1,6}$")
HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
SEGMENT_PREFIX = 24


class FleetError(ValueError):
    """A fleet inventory that cannot be built; the message names the variable and the rule."""


# --- the plan (pure) ----------------------------------------------------------


def _network(value: Any) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(str(value), strict=True)
    except ValueError as exc:
        raise FleetError(
            f"fleet_network is {value!r}; rule: an IPv4 network in CIDR form, e.g. 198.18.0.0/16 ({exc})"
        ) from exc
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 22:
        raise FleetError(
            f"fleet_network is {value!r}; rule: an IPv4 network of /22 or larger "
            "(one /24 per zone and one for the region)"
        )
    return net


def plan(machines: list[dict[str, Any]], network: Any, name: Any, zones: list[Any]) -> dict[str, Any]:
    """Segments and machines of the fleet ``name`` in ``network``.

    ``machines``: one dict per inventory host: ``host`` (its inventory name),
    ``zone`` (``ha_zone``; empty or None: the region segment), ``address``
    (``ha_address``). ``zones``: ``fleet_zones``, the zones that must each
    have a machine.
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise FleetError(
            f"fleet_name is {name!r}; rule: 1-8 characters, a lowercase letter then lowercase letters or digits "
            "(it prefixes bridge names, which Linux caps at 15 characters)"
        )
    net = _network(network)
    if not isinstance(zones, list) or not zones:
        raise FleetError(f"fleet_zones is {zones!r}; rule: a non-empty list of zone names")
    for zone in zones:
        if not isinstance(zone, str) or not SEGMENT_RE.match(zone) or zone == REGION:
            raise FleetError(
                f"fleet_zones has {zone!r}; rule: 1-6 lowercase letters or digits, and not '{REGION}' "
                "(the segment of machines without a zone)"
            )
    if len(set(zones)) != len(zones):
        raise FleetError(f"fleet_zones is {zones}; rule: each zone once")
    if not machines:
        raise FleetError("the fleet has no machine; rule: fleet_group names an inventory group with hosts")

    seen_hosts: dict[str, str] = {}
    seen_addresses: dict[str, str] = {}
    segments: dict[str, dict[str, Any]] = {}
    planned: list[dict[str, Any]] = []
    for entry in machines:
        host = str(entry.get("host", ""))
        if not HOST_RE.match(host):
            raise FleetError(
                f"inventory host {host!r}; rule: a fleet machine's name is 1-32 lowercase letters, digits "
                "and inner dashes (it becomes the machine's hostname)"
            )
        if host in seen_hosts:
            raise FleetError(f"inventory host {host!r} is listed twice; rule: one machine per name")
        seen_hosts[host] = host
        zone = entry.get("zone") or REGION
        if zone != REGION and zone not in zones:
            raise FleetError(
                f"ha_zone of {host} is {zone!r}; rule: one of fleet_zones {zones}, or unset for the region"
            )
        try:
            address = ipaddress.IPv4Address(str(entry.get("address")))
        except ValueError:
            raise FleetError(f"ha_address of {host} is {entry.get('address')!r}; rule: an IPv4 address") from None
        if address not in net:
            raise FleetError(f"ha_address of {host} is {address}; rule: inside fleet_network {net}")
        if str(address) in seen_addresses:
            raise FleetError(
                f"ha_address of {host} is {address}, the same as {seen_addresses[str(address)]}'s; "
                "rule: one address per machine"
            )
        seen_addresses[str(address)] = host
        subnet = ipaddress.IPv4Network(f"{address}/{SEGMENT_PREFIX}", strict=False)
        gateway = subnet.network_address + 1
        if address in (subnet.network_address, subnet.broadcast_address, gateway):
            raise FleetError(
                f"ha_address of {host} is {address}; rule: not the network, broadcast or .1 address of its "
                f"/{SEGMENT_PREFIX} ({gateway} is the host's gateway on that segment)"
            )
        segment = segments.setdefault(
            zone,
            {
                "name": zone,
                "bridge": f"{name}-{zone}",
                "subnet": str(subnet),
                "gateway": str(gateway),
                "prefixlen": SEGMENT_PREFIX,
            },
        )
        if segment["subnet"] != str(subnet):
            raise FleetError(
                f"ha_address of {host} is {address}, outside {segment['subnet']} where zone {zone!r} already has "
                f"machines; rule: all machines of a zone in one /{SEGMENT_PREFIX}"
            )
        planned.append(
            {
                "host": host,
                "machine": f"{name}-{host}",
                "zone": zone,
                "address": str(address),
                "bridge": segment["bridge"],
                "gateway": segment["gateway"],
                "prefixlen": SEGMENT_PREFIX,
            }
        )
    empty = [zone for zone in zones if zone not in segments]
    if empty:
        raise FleetError(f"fleet_zones lists {empty} but no machine has that ha_zone; rule: every zone has a machine")
    by_subnet: dict[str, str] = {}
    for segment in segments.values():
        other = by_subnet.setdefault(segment["subnet"], segment["name"])
        if other != segment["name"]:
            raise FleetError(
                f"zones {other!r} and {segment['name']!r} share {segment['subnet']}; rule: each zone (and the region) "
                f"in its own /{SEGMENT_PREFIX}, so the host routes between them"
            )
    ordered = [segments[z] for z in zones] + ([segments[REGION]] if REGION in segments else [])
    return {"name": name, "network": str(net), "segments": ordered, "machines": planned}


def host_overlaps(
    network: Any, addr_json: list[dict[str, Any]], route_json: list[dict[str, Any]], own: list[str]
) -> list[str]:
    """The host's networks that ``network`` overlaps, ignoring the interfaces in ``own``.

    ``addr_json`` and ``route_json`` are ``ip -j addr`` and ``ip -j route``
    (main table). Loopback is skipped (127/8 never overlaps a sane block).
    """
    net = _network(network)
    found: list[str] = []
    for link in addr_json:
        ifname = link.get("ifname", "")
        if ifname in own or ifname == "lo":
            continue
        for info in link.get("addr_info", []):
            if info.get("family") != "inet":
                continue
            iface_net = ipaddress.IPv4Network(f"{info['local']}/{info.get('prefixlen', 32)}", strict=False)
            if iface_net.overlaps(net):
                found.append(f"{iface_net} on {ifname}")
    for route in route_json:
        dst = route.get("dst", "")
        if route.get("dev") in own or dst in ("default", ""):
            continue
        try:
            route_net = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        if route_net.overlaps(net) and not any(str(route_net) in f for f in found):
            found.append(f"route {route_net} via {route.get('dev', '?')}")
    return found


# --- one machine --------------------------------------------------------------


CGROUP_V1_FREEZER = Path("/sys/fs/cgroup/freezer")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "hastack-fleet"


def freezer_dir(name: str) -> Path | None:
    """The machine's own freezer cgroup: cgroup v1's freezer hierarchy, else cgroup v2; None without either."""
    if (CGROUP_V1_FREEZER / "tasks").exists():
        return CGROUP_V1_FREEZER / CGROUP_PARENT / name
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return CGROUP_ROOT / CGROUP_PARENT / name
    return None


@dataclass
class Machine:
    """One systemd-nspawn machine: overlay over the image, files, the nspawn process.

    Layout under ``state_dir``: ``upper/`` and ``work/`` (the overlay's writable
    part: the machine's disk), ``root/`` (the mounted overlay), ``nspawn.pid``
    and ``console.log``.
    """

    name: str
    image: Path
    state_dir: Path
    # when kill() sent SIGKILL (epoch seconds), None until then
    killed_t: float | None = None
    # when freeze() froze the machine (epoch seconds), None until then
    frozen_t: float | None = None

    @property
    def root(self) -> Path:
        return self.state_dir / "root"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "nspawn.pid"

    # -- state --

    def nspawn_pid(self) -> int | None:
        """PID of this machine's systemd-nspawn, or None when it is not running."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if f"--machine={self.name}".encode() not in cmdline:
            return None  # a stale pid file, reused by another process
        return pid

    def init_pid(self) -> int | None:
        """PID (host namespace) of the machine's PID 1, the only child of its nspawn."""
        pid = self.nspawn_pid()
        if pid is None:
            return None
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    @property
    def cgroup(self) -> Path | None:
        return freezer_dir(self.name)

    def frozen(self) -> bool:
        """True when every process of the machine is frozen."""
        cgroup = self.cgroup
        if cgroup is None or not cgroup.is_dir():
            return False
        if (cgroup / "freezer.state").exists():
            return (cgroup / "freezer.state").read_text().strip() == "FROZEN"
        events = (cgroup / "cgroup.events").read_text()
        return "frozen 1" in events.splitlines()

    def _set_frozen(self, frozen: bool, timeout: float = 30) -> None:
        cgroup = self.cgroup
        if cgroup is None:
            raise RuntimeError("this box has neither cgroup v1's freezer nor cgroup v2: a machine cannot be frozen")
        if (cgroup / "freezer.state").exists():
            (cgroup / "freezer.state").write_text("FROZEN\n" if frozen else "THAWED\n")
        else:
            (cgroup / "cgroup.freeze").write_text("1\n" if frozen else "0\n")
        deadline = time.monotonic() + timeout
        while self.frozen() != frozen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"machine {self.name}: not {'frozen' if frozen else 'thawed'} after {timeout:.0f} s")
            time.sleep(0.02)

    def freeze(self) -> bool:
        """Freeze every process of the machine at once (a VM pause); True when it changed."""
        pid = self.nspawn_pid()
        if pid is None:
            raise RuntimeError(f"machine {self.name} is not running: nothing to freeze")
        cgroup = self.cgroup
        if cgroup is None or str(pid) not in (cgroup / "cgroup.procs").read_text().split():
            raise RuntimeError(
                f"machine {self.name} was booted outside its own cgroup (by an older fleet): kill it and boot it again"
            )
        if self.frozen():
            return False
        self.frozen_t = time.time()
        self._set_frozen(True)
        return True

    def thaw(self) -> bool:
        """Let a frozen machine run again; True when it was frozen."""
        if not self.frozen():
            return False
        self._set_frozen(False)
        return True

    def mounted(self) -> bool:
        return os.path.ismount(self.root)

    # -- actions --

    def mount(self) -> bool:
        """Mount the overlay (image below, the machine's own disk above); True when it mounted."""
        if self.mounted():
            return False
        for sub in ("upper", "work", "root"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        options = f"lowerdir={self.image},upperdir={self.state_dir / 'upper'},workdir={self.state_dir / 'work'}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)], check=True, timeout=60)
        return True

    def start(self, hostname: str, bridge: str) -> int:
        """Boot the machine detached; returns the nspawn PID."""
        log = (self.state_dir / "console.log").open("ab")
        cmd = [
            "systemd-nspawn",
            "--quiet",
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--machine={self.name}",
            f"--hostname={hostname}",
            f"--directory={self.root}",
            f"--network-bridge={bridge}",
            "--resolv-conf=copy-host",
            "--timezone=copy",
            "--link-journal=no",
            "--console=passive",
        ]
        cgroup = self.cgroup
        if cgroup is not None:
            cgroup.mkdir(parents=True, exist_ok=True)

        def join_cgroup() -> None:
            # In the child, before exec: nspawn and every process of the machine
            # are born in the machine's own cgroup, so the whole machine can be
            # frozen at once (freeze()).
            if cgroup is not None:
                (cgroup / "cgroup.procs").write_text(f"{os.getpid()}\n")

        proc = subprocess.Popen(  # preexec_fn: one write; modules run no threads
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=join_cgroup,
        )
        log.close()
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def wait_ssh(self, address: str, timeout: float) -> None:
        """Wait until sshd answers with its banner on ``address``:22, or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.nspawn_pid() is None:
                raise RuntimeError(f"machine {self.name} exited while booting; see {self.state_dir / 'console.log'}")
            try:
                with socket.create_connection((address, 22), timeout=1) as sock:
                    sock.settimeout(2)
                    if sock.recv(64).startswith(b"SSH-"):
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise TimeoutError(f"machine {self.name}: sshd on {address}:22 did not answer in {timeout:.0f} s ({last})")

    def kill(self, timeout: float = 30) -> bool:
        """Kill the machine at once (its PID 1, so every process and its network go together).

        True when something was running. Peers get no FIN: the namespace and
        its sockets vanish with the last process, as after a power loss.
        """
        pid = self.nspawn_pid()
        if pid is None:
            return False
        init = self.init_pid()
        self.killed_t = time.time()
        os.kill(init if init else pid, signal.SIGKILL)
        if self.frozen():  # a frozen process dies only once thawed; the kill is already pending
            self._set_frozen(False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._alive(pid):
            time.sleep(0.05)
        if self._alive(pid):
            os.kill(pid, signal.SIGKILL)
            while self._alive(pid):
                time.sleep(0.05)
        return True

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # a zombie child of ours counts as gone
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
        return True

    def remove(self) -> bool:
        """Kill, unmount and delete the machine's disk; True when anything was there."""
        changed = self.kill()
        if self.mounted():
            subprocess.run(["umount", str(self.root)], check=True, timeout=60)
            changed = True
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
            changed = True
        cgroup = self.cgroup
        if cgroup is not None and cgroup.is_dir():
            deadline = time.monotonic() + 10
            while True:  # empty once the machine's last process has exited
                try:
                    cgroup.rmdir()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            with contextlib.suppress(OSError):  # other fleets' machines may still be in it
                cgroup.parent.rmdir()
            changed = True
        return changed

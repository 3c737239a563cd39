#!/usr/bin/env python3
"""What a fleet's machines cost at rest: processes, memory and CPU per machine.

    .venv/bin/python tools/fleet_usage.py [--fleet hastack] [--seconds 60]

A machine is every process in the PID namespace of its PID 1 (found from the
fleet's pid files, /var/lib/hastack-fleet/<fleet>/machines/<host>/nspawn.pid).
Memory is PSS (shared pages split between the processes that map them, so
the sum is what the fleet really holds) and RSS; CPU is user + system time
over the interval, as a percentage of one core. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def machines(fleet: str) -> dict[str, str]:
    """host -> PID namespace of its PID 1."""
    found = {}
    for pid_file in sorted(Path(f"/var/lib/hastack-fleet/{fleet}/machines").glob("*/nspawn.pid")):
        nspawn = int(pid_file.read_text())
        try:
            init = int(Path(f"/proc/{nspawn}/task/{nspawn}/children").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
        ns = pid_ns(init)
        if ns:
            found[pid_file.parent.name] = ns
    return found


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def memory_kib(pid: int) -> tuple[int, int]:
    pss = rss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
        elif line.startswith("Rss:"):
            rss = int(line.split()[1])
    return pss, rss


def processes(namespaces: dict[str, str]) -> dict[str, list[int]]:
    by_host: dict[str, list[int]] = {host: [] for host in namespaces}
    reverse = {ns: host for host, ns in namespaces.items()}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            host = reverse.get(pid_ns(int(entry.name)) or "")
            if host:
                by_host[host].append(int(entry.name))
    return by_host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fleet", default="hastack")
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    namespaces = machines(args.fleet)
    if not namespaces:
        raise SystemExit(f"no running machine of fleet {args.fleet!r} (see /var/lib/hastack-fleet/{args.fleet})")
    before = {}
    for host, pids in processes(namespaces).items():
        for pid in pids:
            with contextlib.suppress(OSError):
                before[pid] = (host, cpu_ticks(pid))
    start = time.monotonic()
    time.sleep(args.seconds)
    elapsed = time.monotonic() - start
    report: dict[str, dict] = {}
    for host, pids in processes(namespaces).items():
        ticks = pss = rss = 0
        for pid in pids:
            try:
                ticks += cpu_ticks(pid) - (before[pid][1] if pid in before else 0)
                p, r = memory_kib(pid)
            except OSError:
                continue
            pss += p
            rss += r
        report[host] = {
            "processes": len(pids),
            "pss_mib": round(pss / 1024, 1),
            "rss_mib": round(rss / 1024, 1),
            "cpu_percent_of_one_core": round(100 * ticks / CLK_TCK / elapsed, 1),
        }
    total = {
        key: round(sum(m[key] for m in report.values()), 1)
        for key in ("processes", "pss_mib", "rss_mib", "cpu_percent_of_one_core")
    }
    print(json.dumps({"fleet": args.fleet, "seconds": round(elapsed, 1), "machines": report, "total": total}, indent=2))


if __name__ == "__main__":
    main()

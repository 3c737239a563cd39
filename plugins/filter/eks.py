# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""Input checks of the eks_multi_az role that an argument spec cannot express."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any


def eks_network_problems(vpc_cidr: str, zones: list[dict[str, Any]], region: str) -> list[str]:
    """One line per rule broken by eks_multi_az_vpc_cidr / eks_multi_az_zones (empty when fine)."""
    problems: list[str] = []
    try:
        vpc = ipaddress.ip_network(str(vpc_cidr), strict=True)
    except ValueError as exc:
        return [f"eks_multi_az_vpc_cidr {vpc_cidr!r} is not a network in CIDR notation ({exc})"]
    if vpc.version != 4 or not 16 <= vpc.prefixlen <= 28:
        problems.append(f"eks_multi_az_vpc_cidr {vpc_cidr}: rule: an IPv4 block from /16 to /28 (what a VPC accepts)")
    names = [str(zone.get("az", "")) for zone in zones]
    if len(set(names)) < 3 or len(set(names)) != len(names):
        problems.append(
            f"eks_multi_az_zones names the zones {names}; rule: at least 3 entries, each a distinct "
            "availability zone (one subnet and one node group per zone)"
        )
    for name in names:
        if not name.startswith(region) or len(name) <= len(region):
            problems.append(f"eks_multi_az_zones: zone {name!r} is not a zone of eks_multi_az_region {region!r}")
    subnets: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for name, zone in zip(names, zones, strict=True):
        try:
            subnet = ipaddress.ip_network(str(zone.get("cidr", "")), strict=True)
        except ValueError as exc:
            problems.append(f"eks_multi_az_zones[{name}].cidr {zone.get('cidr')!r} is not a network ({exc})")
            continue
        if subnet.version != vpc.version or not subnet.subnet_of(vpc):  # type: ignore[arg-type]
            problems.append(f"eks_multi_az_zones[{name}].cidr {subnet} is not inside eks_multi_az_vpc_cidr {vpc}")
        elif subnet.prefixlen > 28:
            problems.append(f"eks_multi_az_zones[{name}].cidr {subnet}: rule: /28 or larger (what a subnet accepts)")
        for other, seen in subnets:
            if subnet.overlaps(seen):
                problems.append(
                    f"eks_multi_az_zones[{name}].cidr {subnet} overlaps eks_multi_az_zones[{other}].cidr {seen}"
                )
        subnets.append((name, subnet))
    return problems


def eks_nodegroup_sizes(
    zones: list[dict[str, Any]], min_size: int, desired_size: int, max_size: int
) -> list[dict[str, Any]]:
    """Per zone: az, min_size, desired_size, max_size (the zone's overrides, else the group defaults)."""
    sizes = []
    for zone in zones:
        sizes.append(
            {
                "az": zone.get("az"),
                "min_size": int(zone.get("min_size", min_size)),
                "desired_size": int(zone.get("desired_size", desired_size)),
                "max_size": int(zone.get("max_size", max_size)),
            }
        )
    return sizes


class FilterModule:
    """eks_multi_az input checks."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"eks_network_problems": eks_network_problems, "eks_nodegroup_sizes": eks_nodegroup_sizes}

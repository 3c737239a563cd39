# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""Filters over the lab fleet's inventory (role ``fleet``).

``fleet_plan`` turns each machine's zone and address into the fleet's
segments and machines, refusing a bad inventory with a message that names the
variable and the rule; ``fleet_host_overlaps`` lists the box's own networks
that the fleet's block would overlap. Plain functions over
``plugins/module_utils/fleet.py``, unit-tested in tests/unit/test_fleet.py.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.hastack.ha.plugins.module_utils.fleet import FleetError, host_overlaps, plan


def fleet_plan(machines: Any, network: Any, name: Any, zones: Any) -> dict[str, Any]:
    if not isinstance(machines, list) or not all(isinstance(m, dict) for m in machines):
        raise AnsibleFilterError("fleet_plan: expected a list of dicts (host, zone, address)")
    try:
        return plan(machines, network, name, zones)
    except FleetError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def fleet_host_overlaps(network: Any, addrs: Any, routes: Any, own: Any = ()) -> list[str]:
    try:
        return host_overlaps(network, list(addrs or []), list(routes or []), list(own or []))
    except FleetError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"fleet_plan": fleet_plan, "fleet_host_overlaps": fleet_host_overlaps}

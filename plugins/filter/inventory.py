# Copyright: hastack developers
# Apache License 2.0 (see galaxy.yml)
"""Checks over the inventory itself, for playbooks/preflight.yml.

Pure functions: no I/O. Documented in the sidecar files
``address_problems.yml`` and ``unset_variables.yml``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleError, AnsibleFilterError
from jinja2 import Undefined

EXAMPLE = "203.0.113.11"


def _names(value: Any, filter_name: str) -> list[str]:
    """A list of names, each once, in order."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise AnsibleFilterError(f"{filter_name}: expected a list of names, got {type(value).__name__}")
    return list(dict.fromkeys(str(n) for n in value))


def _first_line(problem: Exception | Undefined) -> str:
    """The first line of an error, or the message of an undefined value (a template that did not resolve)."""
    text = (problem._undefined_message if isinstance(problem, Undefined) else str(problem)).strip()
    return text.splitlines()[0] if text else type(problem).__name__


def _value(host_vars: Mapping[str, Any], name: str) -> tuple[Any, str | None]:
    """A host's value of ``name`` (None when unset), or why it cannot be read."""
    try:
        value = host_vars.get(name)
    except AnsibleError as err:  # a template in the value that does not resolve
        return None, _first_line(err)
    if isinstance(value, Undefined):  # the same, as ansible-core 2.19 hands it over
        return None, _first_line(value)
    return value, None


def address_problem(value: Any) -> str | None:
    """Why ``value`` is not a unicast IPv4 address a peer can connect to, or None when it is one."""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not an IPv4 address"
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        return f"'{value}' is not an IPv4 address"
    if address.is_unspecified:
        return f"'{value}' is the unspecified address, which no peer can connect to"
    if address.is_multicast:
        return f"'{value}' is a multicast address"
    if address.is_reserved:  # 240.0.0.0/4, the limited broadcast included
        return f"'{value}' is in the reserved block 240.0.0.0/4"
    return None


def address_problems(hosts: Any, hostvars: Mapping[str, Any], variable: str = "ha_address") -> list[str]:
    """One line per host whose ``variable`` is unset or not a usable IPv4 address, and per shared address.

    ``hosts`` are inventory host names (duplicates are counted once), ``hostvars``
    maps each to its variables (Ansible's ``hostvars``). Every line names the
    host(s), the variable and the rule; an empty list means every host is fine.
    """
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError(f"address_problems: expected hostvars (a mapping), got {type(hostvars).__name__}")
    problems: list[str] = []
    owners: dict[str, list[str]] = {}
    for host in _names(hosts, "address_problems"):
        value, error = _value(hostvars.get(host, {}), variable)
        if error is not None:
            problems.append(f"{host}: {variable} cannot be resolved ({error}); rule: the host's IPv4 address")
            continue
        if value is None or value == "":
            problems.append(
                f"{host}: {variable} is not set; rule: every host sets {variable}, the IPv4 address "
                f"its peers and clients reach it on (e.g. {EXAMPLE}); nothing is guessed from facts"
            )
            continue
        problem = address_problem(value)
        if problem is not None:
            problems.append(f"{host}: {variable} {problem}; rule: a unicast IPv4 address like {EXAMPLE}")
            continue
        owners.setdefault(str(ipaddress.IPv4Address(value)), []).append(host)
    for address, names in owners.items():
        if len(names) > 1:
            problems.append(
                f"{', '.join(names)}: {variable} is {address} on each; rule: every host has its own address"
            )
    return problems


def unset_variables(names: Any, host_vars: Mapping[str, Any]) -> list[dict[str, str]]:
    """The ``names`` that ``host_vars`` (one host's variables) gives no value: unset, null, empty, or not resolving.

    One ``{name, reason}`` per such name, in the order given; an empty list when every one has a value.
    """
    if not isinstance(host_vars, Mapping):
        raise AnsibleFilterError(
            f"unset_variables: expected a host's variables (a mapping), got {type(host_vars).__name__}"
        )
    unset = []
    for name in _names(names, "unset_variables"):
        value, error = _value(host_vars, name)
        if error is not None:
            unset.append({"name": name, "reason": f"does not resolve: {error}"})
        elif value is None:
            unset.append({"name": name, "reason": "not set"})
        elif value == "":
            unset.append({"name": name, "reason": "empty"})
    return unset


class FilterModule:
    """Inventory checks."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"address_problems": address_problems, "unset_variables": unset_variables}

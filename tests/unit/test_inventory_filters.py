"""hastack.ha.address_problems / unset_variables: the inventory checks of playbooks/preflight.yml.

Plain calls with plain dicts in place of hostvars; a value that "does not
resolve" is what ansible-core hands a filter for a template with an undefined
variable (a jinja2 Undefined), or an error raised on access.
"""

from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError, AnsibleUndefinedVariable
from ansible_collections.hastack.ha.plugins.filter.inventory import (
    FilterModule,
    address_problem,
    address_problems,
    unset_variables,
)
from jinja2 import StrictUndefined

GOOD = {"node-a": {"ha_address": "203.0.113.11"}, "node-b": {"ha_address": "203.0.113.12"}}


class Raising(dict):
    """A host's variables whose every value raises on access, as a broken template can."""

    def __getitem__(self, key: str) -> Any:
        raise AnsibleUndefinedVariable(f"'vault_{key}' is undefined\nmore detail")

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]


def test_the_filters_are_registered():
    assert FilterModule().filters() == {"address_problems": address_problems, "unset_variables": unset_variables}


@pytest.mark.parametrize("value", ["203.0.113.11", "10.0.0.1", "127.42.0.11", "192.168.1.254"])
def test_a_unicast_ipv4_address_passes(value: str):
    assert address_problem(value) is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("10.0.0.256", "is not an IPv4 address"),
        ("10.0.0", "is not an IPv4 address"),
        ("010.0.0.1", "is not an IPv4 address"),
        ("node-a.example.org", "is not an IPv4 address"),
        ("2001:db8::1", "is not an IPv4 address"),
        (" 10.0.0.1", "is not an IPv4 address"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "reserved"),
        (167772161, "is a int, not an IPv4 address"),
        (["10.0.0.1"], "is a list"),
    ],
)
def test_anything_else_is_refused_with_the_reason(value: Any, words: str):
    problem = address_problem(value)
    assert problem is not None and words in problem


def test_good_addresses_give_no_problem_and_a_host_in_two_groups_counts_once():
    assert address_problems(["node-a", "node-b", "node-a"], GOOD) == []


def test_an_unset_address_names_the_host_the_variable_and_the_rule():
    hostvars = {**GOOD, "lb-1": {}, "mon": {"ha_address": ""}, "x": {"ha_address": None}}
    problems = address_problems(["node-a", "node-b", "lb-1", "mon", "x", "not-in-hostvars"], hostvars)
    assert [p.split(":")[0] for p in problems] == ["lb-1", "mon", "x", "not-in-hostvars"]
    assert all("ha_address is not set; rule: every host sets ha_address" in p for p in problems)


def test_a_bad_address_names_the_host_and_the_value():
    problems = address_problems(["node-a", "node-b"], {**GOOD, "node-b": {"ha_address": "10.0.0.300"}})
    assert problems == [
        "node-b: ha_address '10.0.0.300' is not an IPv4 address; rule: a unicast IPv4 address like 203.0.113.11"
    ]


def test_a_shared_address_names_every_host_that_has_it_once():
    hostvars = {h: {"ha_address": "203.0.113.11"} for h in ("node-a", "node-b", "node-c")}
    hostvars["mon"] = {"ha_address": "203.0.113.20"}
    problems = address_problems(["node-a", "node-b", "node-c", "mon"], hostvars)
    assert problems == [
        "node-a, node-b, node-c: ha_address is 203.0.113.11 on each; rule: every host has its own address"
    ]


def test_an_address_that_does_not_resolve_is_a_problem_not_a_crash():
    problems = address_problems(
        ["node-a", "node-b"], {**GOOD, "node-b": {"ha_address": StrictUndefined(name="ha_lab_net")}}
    )
    assert problems == [
        "node-b: ha_address cannot be resolved ('ha_lab_net' is undefined); rule: the host's IPv4 address"
    ]
    problems = address_problems(["node-b"], {"node-b": Raising()})
    assert problems == [
        "node-b: ha_address cannot be resolved ('vault_ha_address' is undefined); rule: the host's IPv4 address"
    ]


def test_another_variable_can_be_checked():
    assert address_problems(["a"], {"a": {"ha_address": "bad", "other": "10.0.0.1"}}, "other") == []


@pytest.mark.parametrize(("hosts", "hostvars"), [("node-a", GOOD), (None, GOOD), (["node-a"], ["node-a"])])
def test_wrong_input_types_are_refused(hosts: Any, hostvars: Any):
    with pytest.raises(AnsibleFilterError, match="address_problems: expected"):
        address_problems(hosts, hostvars)


def test_unset_variables_names_each_missing_one_with_its_reason_in_order():
    host_vars = {
        "set": "s3cret-s3cret-s3cret",
        "empty": "",
        "null": None,
        "broken": StrictUndefined(name="vault_broken"),
    }
    names = ["null", "set", "missing", "broken", "empty", "missing"]
    assert unset_variables(names, host_vars) == [
        {"name": "null", "reason": "not set"},
        {"name": "missing", "reason": "not set"},
        {"name": "broken", "reason": "does not resolve: 'vault_broken' is undefined"},
        {"name": "empty", "reason": "empty"},
    ]


def test_unset_variables_reports_an_error_on_access_by_its_first_line_and_never_a_value():
    unset = unset_variables(["x"], Raising())
    assert unset == [{"name": "x", "reason": "does not resolve: 'vault_x' is undefined"}]
    assert unset_variables(["x"], {"x": "s3cret"}) == []


def test_unset_variables_refuses_wrong_input_types():
    with pytest.raises(AnsibleFilterError, match="unset_variables: expected a list of names"):
        unset_variables("redis_sentinel_password", {})
    with pytest.raises(AnsibleFilterError, match="unset_variables: expected a host's variables"):
        unset_variables(["x"], None)

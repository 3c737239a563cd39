"""Render the prometheus_alertmanager role's templates with its defaults, as the role does.

Shared by the unit tests of the rules, the routes and the monitoring client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "prometheus_alertmanager"
RULES_TEMPLATE = ROLE / "templates" / "etc" / "prometheus" / "hastack.rules.yml.j2"
AM_TEMPLATE = ROLE / "templates" / "etc" / "alertmanager" / "alertmanager.yml.j2"


def role_defaults(**overrides: Any) -> dict[str, Any]:
    """The role's defaults; values that are templates resolved without an inventory."""
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    env = jinja2.Environment(undefined=jinja2.ChainableUndefined)
    # lookup(): the Kubernetes manifest directory's default reads $PWD
    inventory = {"ha_address": "127.0.0.1", "lookup": lambda *_args, **_kw: "/tmp"}
    for key, value in values.items():
        if isinstance(value, str) and "{{" in value:
            values[key] = env.from_string(value).render(**inventory)
    values.update(overrides)
    values["ansible_managed"] = "rendered by tests/unit/test_alert_rules.py"
    return values


def render_rules(**overrides: Any) -> str:
    env = jinja2.Environment(
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    values = role_defaults(**overrides)
    values["prometheus_alertmanager_sentinel_quorum"] = int(values["prometheus_alertmanager_sentinel_quorum"])
    return env.from_string(RULES_TEMPLATE.read_text()).render(**values)


def render_alertmanager(**overrides: Any) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["to_json"] = json.dumps
    values = role_defaults(prometheus_alertmanager_address="127.0.0.1", **overrides)
    return env.from_string(AM_TEMPLATE.read_text()).render(**values)


PROMETHEUS_TEMPLATE = ROLE / "templates" / "etc" / "prometheus" / "prometheus.yml.j2"


def render_prometheus(groups: dict[str, list[str]], hostvars: dict[str, dict[str, Any]], **overrides: Any) -> str:
    """prometheus.yml for an inventory given as groups and hostvars."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["to_json"] = json.dumps
    env.filters["combine"] = lambda a, b: {**a, **b}
    values = role_defaults(**overrides)
    values.setdefault("_prometheus_alertmanager_alertmanagers", ["127.0.0.1:9093"])
    return env.from_string(PROMETHEUS_TEMPLATE.read_text()).render(groups=groups, hostvars=hostvars, **values)

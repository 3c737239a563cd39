"""Every role's defaults/main.yml agrees with its meta/argument_specs.yml.

Parametrised over roles/*/defaults/main.yml, so a new role is covered as soon
as it has defaults. The rule (STYLE.md, DESIGN.md "Input"):

- the keys of defaults/main.yml are the options of the ``main`` entry point,
  except options that are ``required: true`` without a default (secrets and
  other values the inventory must give), which must NOT be in defaults: a
  default would satisfy ``required`` and silently switch the check off; the
  same for secrets needed only in some setups (``no_log: true`` without a
  default; the role's preflight names them when they are needed);
- every option (all entry points, suboptions too) has a description and a type;
- where the spec repeats a default, it equals the value in defaults/main.yml,
  unless that value is a Jinja template (resolved only at run time);
- a literal default is one of the option's choices, if it has choices.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"
ROLES = sorted(p.parent.parent.name for p in ROLES_DIR.glob("*/defaults/main.yml"))

# Known violations, reported to the role's owner. Each entry turns into a
# strict xfail: once the role is fixed the test XPASSes and fails, so the
# entry must then be deleted. Keep it empty whenever possible.
KNOWN_DEFECTS: dict[tuple[str, str], str] = {}


def defects(test: str) -> list[Any]:
    """ROLES as pytest params, with the known defects of ``test`` marked xfail(strict)."""
    params = []
    for role in ROLES:
        reason = KNOWN_DEFECTS.get((role, test))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(role, marks=marks, id=role))
    return params


# --- loading ------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def spec_path(role: str) -> Path:
    for name in ("argument_specs.yml", "argument_specs.yaml"):
        path = ROLES_DIR / role / "meta" / name
        if path.exists():
            return path
    return ROLES_DIR / role / "meta" / "argument_specs.yml"


def defaults(role: str) -> dict[str, Any]:
    data = load_yaml(ROLES_DIR / role / "defaults" / "main.yml") or {}
    assert isinstance(data, dict), f"roles/{role}/defaults/main.yml: top level is not a mapping"
    return data


def entry_points(role: str) -> dict[str, Any]:
    path = spec_path(role)
    assert path.exists(), (
        f"roles/{role} has defaults/main.yml but no meta/argument_specs.yml: add one with a "
        "'main' entry point documenting every variable in defaults/main.yml"
    )
    data = load_yaml(path) or {}
    specs = data.get("argument_specs") if isinstance(data, dict) else None
    assert isinstance(specs, dict), f"{path}: no 'argument_specs' mapping at the top level"
    return specs


def main_options(role: str) -> dict[str, dict[str, Any]]:
    specs = entry_points(role)
    assert "main" in specs, f"roles/{role}/meta/argument_specs.yml: no 'main' entry point"
    options = specs["main"].get("options") or {}
    assert isinstance(options, dict), (
        f"roles/{role}/meta/argument_specs.yml: main.options is not a mapping"
    )
    return options


def is_required_without_default(option: dict[str, Any]) -> bool:
    return bool(option.get("required")) and "default" not in option


def is_secret_without_default(option: dict[str, Any]) -> bool:
    """A secret needed only in some setups: no default (DESIGN.md, "Secrets"), preflight asks for it."""
    return bool(option.get("no_log")) and "default" not in option


def without_default_by_design(option: dict[str, Any]) -> bool:
    """Options that must never have a value in defaults/main.yml."""
    return is_required_without_default(option) or is_secret_without_default(option)


def walk_options(options: dict[str, Any], where: str) -> Iterator[tuple[str, Any]]:
    """(dotted path, option) for every option and suboption."""
    for name, option in (options or {}).items():
        path = f"{where}.{name}"
        yield path, option
        if isinstance(option, dict) and isinstance(option.get("options"), dict):
            yield from walk_options(option["options"], path)


def is_template(value: Any) -> bool:
    """True when a Jinja expression or statement appears anywhere in value."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(is_template(k) or is_template(v) for k, v in value.items())
    if isinstance(value, list):
        return any(is_template(v) for v in value)
    return False


def canonical(value: Any) -> str:
    """Compare values type-strictly (true != 1, "5" != 5)."""
    return json.dumps(value, sort_keys=True, default=str)


# --- the checks: each returns what is wrong, empty when all is well ----------


def key_problems(values: dict[str, Any], options: dict[str, Any]) -> list[str]:
    """defaults keys vs the main options that are not required-without-default."""
    expected = {name for name, opt in options.items() if not without_default_by_design(opt)}
    undocumented = sorted(set(values) - set(options))
    missing = sorted(expected - set(values))
    problems = []
    if undocumented:
        problems.append(
            f"defaults/main.yml defines {undocumented}, which meta/argument_specs.yml does not "
            "document in the 'main' entry point: add them there with a description and a type "
            "(or remove them from defaults)"
        )
    if missing:
        problems.append(
            f"meta/argument_specs.yml (main) documents {missing}, which are not required but "
            "have no value in defaults/main.yml: add a default there, or mark them "
            "'required: true' if the inventory must always give them"
        )
    return problems


def required_in_defaults(values: dict[str, Any], options: dict[str, Any]) -> list[str]:
    required = {name for name, opt in options.items() if without_default_by_design(opt)}
    defined = sorted(required & set(values))
    if not defined:
        return []
    return [
        f"defaults/main.yml defines {defined}, which meta/argument_specs.yml marks "
        "'required: true' or as a secret (no_log) without a default: a value in defaults always "
        "satisfies 'required' (or the preflight check that asks for the secret), so a missing value "
        "is never reported. Remove them from defaults (secrets come from vault/env) or drop "
        "'required'"
    ]


def undescribed_options(specs: dict[str, Any]) -> list[str]:
    problems = []
    for entry, spec in specs.items():
        for path, option in walk_options((spec or {}).get("options") or {}, entry):
            if not isinstance(option, dict):
                problems.append(f"{path}: not a mapping")
                continue
            for key in ("description", "type"):
                if not option.get(key):
                    problems.append(f"meta/argument_specs.yml {path}: no {key}")
    return problems


def default_mismatches(values: dict[str, Any], options: dict[str, Any]) -> list[str]:
    problems = []
    for name, option in options.items():
        if name not in values or "default" not in option or is_template(values[name]):
            continue
        if canonical(option["default"]) != canonical(values[name]):
            problems.append(
                f"{name}: meta/argument_specs.yml (main) says default {option['default']!r}, "
                f"defaults/main.yml {values[name]!r}; make the spec match defaults (or drop it)"
            )
    return problems


def invalid_choices(values: dict[str, Any], options: dict[str, Any]) -> list[str]:
    problems = []
    for name, option in options.items():
        choices = option.get("choices")
        if not choices or name not in values or is_template(values[name]):
            continue
        if values[name] not in choices:
            problems.append(f"{name}: defaults/main.yml value {values[name]!r} not in {choices}")
    return problems


# --- every role -------------------------------------------------------------


@pytest.mark.parametrize("role", defects("test_defaults_keys_match_spec"))
def test_defaults_keys_match_spec(role: str) -> None:
    problems = key_problems(defaults(role), main_options(role))
    assert not problems, f"roles/{role}: " + "; ".join(problems)


@pytest.mark.parametrize("role", defects("test_required_options_are_not_in_defaults"))
def test_required_options_are_not_in_defaults(role: str) -> None:
    problems = required_in_defaults(defaults(role), main_options(role))
    assert not problems, f"roles/{role}: " + "; ".join(problems)


@pytest.mark.parametrize("role", defects("test_every_option_has_description_and_type"))
def test_every_option_has_description_and_type(role: str) -> None:
    problems = undescribed_options(entry_points(role))
    assert not problems, f"roles/{role}: " + "; ".join(problems)


@pytest.mark.parametrize("role", defects("test_spec_defaults_equal_defaults_values"))
def test_spec_defaults_equal_defaults_values(role: str) -> None:
    problems = default_mismatches(defaults(role), main_options(role))
    assert not problems, f"roles/{role}: " + "; ".join(problems)


@pytest.mark.parametrize("role", defects("test_default_values_are_allowed_choices"))
def test_default_values_are_allowed_choices(role: str) -> None:
    problems = invalid_choices(defaults(role), main_options(role))
    assert not problems, f"roles/{role}: " + "; ".join(problems)


# --- each check catches a seeded fault and passes a good role ---------------

GOOD_DEFAULTS = {"r_port": 5432, "r_mode": "auto", "r_dir": "/srv/{{ r_name }}"}
GOOD_OPTIONS: dict[str, Any] = {
    "r_port": {"type": "int", "default": 5432, "description": "Port."},
    "r_mode": {"type": "str", "default": "auto", "choices": ["auto", "off"], "description": "M."},
    "r_dir": {"type": "path", "default": "/srv/x", "description": "Templated: not compared."},
    "r_password": {"type": "str", "required": True, "no_log": True, "description": "Secret."},
    "r_key": {"type": "str", "no_log": True, "description": "Secret needed only in some setups."},
}


def test_checks_pass_a_good_role() -> None:
    specs = {"main": {"options": GOOD_OPTIONS}}
    assert key_problems(GOOD_DEFAULTS, GOOD_OPTIONS) == []
    assert required_in_defaults(GOOD_DEFAULTS, GOOD_OPTIONS) == []
    assert undescribed_options(specs) == []
    assert default_mismatches(GOOD_DEFAULTS, GOOD_OPTIONS) == []
    assert invalid_choices(GOOD_DEFAULTS, GOOD_OPTIONS) == []


def test_undocumented_default_is_caught() -> None:
    problems = key_problems(GOOD_DEFAULTS | {"r_extra": 1}, GOOD_OPTIONS)
    assert len(problems) == 1
    assert "['r_extra']" in problems[0]


def test_option_without_default_value_is_caught() -> None:
    values = {k: v for k, v in GOOD_DEFAULTS.items() if k != "r_port"}
    problems = key_problems(values, GOOD_OPTIONS)
    assert len(problems) == 1
    assert "['r_port']" in problems[0]


def test_required_secret_in_defaults_is_caught() -> None:
    problems = required_in_defaults(GOOD_DEFAULTS | {"r_password": ""}, GOOD_OPTIONS)
    assert len(problems) == 1
    assert "['r_password']" in problems[0]


def test_optional_secret_in_defaults_is_caught() -> None:
    problems = required_in_defaults(GOOD_DEFAULTS | {"r_key": ""}, GOOD_OPTIONS)
    assert len(problems) == 1
    assert "['r_key']" in problems[0]


def test_option_without_description_or_type_is_caught() -> None:
    options = GOOD_OPTIONS | {"r_sub": {"type": "dict", "description": "D.", "options": {
        "leaf": {"description": "no type"}}}}  # fmt: skip
    specs = {"main": {"options": options}, "other": {"options": {"x": {"type": "str"}}}}
    assert undescribed_options(specs) == [
        "meta/argument_specs.yml main.r_sub.leaf: no type",
        "meta/argument_specs.yml other.x: no description",
    ]


@pytest.mark.parametrize("wrong", [5433, "5432", True])
def test_different_spec_default_is_caught(wrong: Any) -> None:
    problems = default_mismatches(GOOD_DEFAULTS | {"r_port": wrong}, GOOD_OPTIONS)
    assert len(problems) == 1
    assert problems[0].startswith("r_port:")


def test_default_outside_choices_is_caught() -> None:
    problems = invalid_choices(GOOD_DEFAULTS | {"r_mode": "on"}, GOOD_OPTIONS)
    assert problems == ["r_mode: defaults/main.yml value 'on' not in ['auto', 'off']"]


# --- the helpers themselves -------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ ha_platform | default('hosts') }}", True),
        ("/var/lib/etcd/{{ etcd_name }}", True),
        ("{% if x %}a{% endif %}", True),
        ({"a": ["{{ b }}"]}, True),
        ("plain", False),
        (5432, False),
        ({"max_connections": 100}, False),
    ],
)
def test_is_template(value: Any, expected: bool) -> None:
    assert is_template(value) is expected


def test_canonical_is_type_strict() -> None:
    assert canonical(True) != canonical(1)
    assert canonical("5") != canonical(5)
    assert canonical({"b": 1, "a": 2}) == canonical({"a": 2, "b": 1})


def test_required_without_default() -> None:
    assert is_required_without_default({"required": True})
    assert not is_required_without_default({"required": True, "default": ""})
    assert not is_required_without_default({"type": "str"})


def test_secret_without_default() -> None:
    assert is_secret_without_default({"no_log": True})
    assert not is_secret_without_default({"no_log": True, "default": ""})
    assert not is_secret_without_default({"type": "str"})


def test_roles_are_discovered() -> None:
    assert "ha_service" in ROLES

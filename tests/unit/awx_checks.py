"""What the AWX tests need: awx/ as data, the awx.awx modules' own argument
specs, playbooks/awx_configure.yml's tasks rendered as ansible-playbook
renders them, AWX's survey rules, and where a survey's variable is declared.

There is no controller here, so nothing is sent anywhere: the modules are
imported, never run, and their argument specs are captured from their
``main()`` (the spec a module validates its input with at run time).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

REPO = Path(__file__).resolve().parents[2]
AWX_DIR = REPO / "awx"
CONFIGURE = REPO / "playbooks" / "awx_configure.yml"
ROLES = REPO / "roles"

# --- awx/ ------------------------------------------------------------------------


def awx_data() -> dict[str, Any]:
    """Every awx/*.yml, merged (as include_vars reads the directory)."""
    data: dict[str, Any] = {}
    for path in sorted(AWX_DIR.glob("*.yml")):
        content = yaml.safe_load(path.read_text()) or {}
        assert isinstance(content, dict), f"{path}: top level is not a mapping"
        duplicated = sorted(set(content) & set(data))
        assert not duplicated, f"{path}: {duplicated} also defined in another awx/ file"
        data.update(content)
    return data


# --- the awx.awx modules' argument specs -------------------------------------


class _Captured(Exception):
    pass


@dataclass(frozen=True)
class ModuleSpec:
    argument_spec: dict[str, Any]
    constraints: dict[str, Any]  # mutually_exclusive, required_if, ... as the module passes them


@functools.cache
def module_spec(module: str) -> ModuleSpec:
    """The argument spec awx.awx.<module> validates its input with (auth options included)."""
    from ansible_collections.awx.awx.plugins.module_utils import controller_api

    source = importlib.import_module(f"ansible_collections.awx.awx.plugins.modules.{module}")
    got: dict[str, Any] = {}

    def capture(self: Any, argument_spec: dict[str, Any] | None = None, **kwargs: Any) -> None:
        got["spec"], got["kwargs"] = argument_spec or {}, kwargs
        raise _Captured

    with mock.patch.object(controller_api.ControllerAPIModule, "__init__", capture), contextlib.suppress(_Captured):
        source.main()
    assert "spec" in got, f"awx.awx.{module}: main() did not build a ControllerAPIModule"
    spec = dict(controller_api.ControllerModule.AUTH_ARGSPEC) | got["spec"]
    keys = ("mutually_exclusive", "required_together", "required_one_of", "required_if", "required_by")
    return ModuleSpec(spec, {k: v for k, v in got["kwargs"].items() if k in keys})


def argument_problems(module: str, args: dict[str, Any]) -> list[str]:
    """What awx.awx.<module> would reject in ``args`` before sending anything."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    spec = module_spec(module)
    result = ArgumentSpecValidator(spec.argument_spec, **spec.constraints).validate(args)
    return [str(message) for message in result.error_messages]


# --- awx_configure.yml rendered --------------------------------------------------


def _trust(value: Any) -> Any:
    """Mark strings as templates, as ansible-playbook does with what it loads from files."""
    from ansible.template import trust_as_template

    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: _trust(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trust(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


@functools.cache
def _init_plugins() -> None:
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader([str(REPO / "collections")])


def configure_play() -> dict[str, Any]:
    plays = yaml.safe_load(CONFIGURE.read_text())
    assert len(plays) == 1, f"{CONFIGURE}: expected one play"
    return plays[0]


def module_tasks(play: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(task, module) for every awx.awx task of the play."""
    out = []
    for task in play["tasks"]:
        modules = [key for key in task if key.startswith("awx.awx.")]
        if modules:
            out.append((task, modules[0].removeprefix("awx.awx.")))
    return out


@dataclass(frozen=True)
class Call:
    task: str
    module: str
    label: str
    args: dict[str, Any]


def render(template: Any, variables: dict[str, Any]) -> Any:
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    _init_plugins()
    return _plain(Templar(loader=DataLoader(), variables=variables).template(_trust(template)))


def calls(env: dict[str, str] | None = None) -> list[Call]:
    """Every awx.awx module call awx_configure.yml makes, its arguments rendered per item.

    ``env`` (e.g. the credentials' variables) is set while rendering, so
    lookups of the environment see it.
    """
    play = configure_play()
    variables = _trust(play.get("vars") or {}) | _trust(awx_data())
    variables["playbook_dir"] = str(CONFIGURE.parent)
    out = []
    with mock.patch.dict(os.environ, env or {}):
        for task, module in module_tasks(play):
            items = render(task["loop"], variables) if "loop" in task else [None]
            for item in items:
                # the loop's result is data, never a template again (as in ansible-playbook)
                scope = variables | ({"item": item} if item is not None else {})
                args = render(task[f"awx.awx.{module}"], scope)
                label = render(task["loop_control"]["label"], scope) if "loop_control" in task else module
                out.append(Call(task["name"], module, str(label), args))
    return out


def item_keys_used(task: dict[str, Any]) -> set[str]:
    """The item keys a task reads (``item.<key>``) anywhere in it."""
    return set(re.findall(r"\bitem\.(\w+)", json.dumps(task)))


# --- AWX's survey rules ---------------------------------------------------------

# AWX's JobTemplateSurveySpec.ALLOWED_TYPES: question type -> type of a default.
SURVEY_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,), "textarea": (str,), "password": (str,), "multiplechoice": (str,), "multiselect": (str,),
    "integer": (int,), "float": (float, int),
}  # fmt: skip


def survey_rule_problems(spec: Any) -> list[str]:
    """What AWX's API rejects in a survey spec (awx/api/views: _validate_spec_data), and
    defaults its launch check would refuse (an integer outside min..max, a text of the wrong length)."""
    if not isinstance(spec, dict):
        return ["survey spec is not a mapping"]
    problems = []
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if not isinstance(spec.get(field), kind):
            problems.append(f"survey spec: '{field}' missing or not a {kind.__name__}")
    if problems:
        return problems
    if not spec["spec"]:
        return ["survey spec: 'spec' has no question"]
    seen: set[str] = set()
    for index, q in enumerate(spec["spec"]):
        where = f"question {index} ({q.get('variable', '?') if isinstance(q, dict) else '?'})"
        if not isinstance(q, dict):
            problems.append(f"{where}: not a mapping")
            continue
        missing = [f for f in ("type", "question_name", "variable", "required") if f not in q]
        if missing:
            problems.append(f"{where}: {missing} missing")
            continue
        if not isinstance(q["required"], bool):
            problems.append(f"{where}: 'required' must be a boolean")
        for field in ("type", "question_name", "variable"):
            if not isinstance(q[field], str):
                problems.append(f"{where}: '{field}' must be a string")
        if q["variable"] in seen:
            problems.append(f"{where}: variable {q['variable']!r} asked twice")
        seen.add(q["variable"])
        qtype = q["type"]
        if qtype not in SURVEY_TYPES:
            problems.append(f"{where}: type {qtype!r} is not one of {sorted(SURVEY_TYPES)}")
            continue
        default = q.get("default")
        has_default = "default" in q and default != ""
        if has_default and (isinstance(default, bool) or not isinstance(default, SURVEY_TYPES[qtype])):
            problems.append(f"{where}: default {default!r} is not a {SURVEY_TYPES[qtype][0].__name__}")
            continue
        for key in ("min", "max"):
            if q.get(key) is not None and (isinstance(q[key], bool) or not isinstance(q[key], int)):
                problems.append(f"{where}: {key} {q[key]!r} is not an integer")
        if qtype in ("multiplechoice", "multiselect"):
            choices = q.get("choices")
            if not choices:
                problems.append(f"{where}: a {qtype} question needs choices")
                continue
            choices = choices.splitlines() if isinstance(choices, str) else choices
            defaults = (default.splitlines() if isinstance(default, str) else default) if has_default else []
            if qtype == "multiplechoice" and len(defaults) > 1:
                problems.append(f"{where}: a multiplechoice question has one default, not {defaults}")
            outside = [d for d in defaults if d not in choices]
            if outside:
                problems.append(f"{where}: default {outside} not among the choices {choices}")
        low, high = q.get("min"), q.get("max")
        size = default if qtype in ("integer", "float") else len(str(default))
        if has_default and qtype != "multiselect" and qtype != "multiplechoice" and (
            (low is not None and size < low) or (high is not None and size > high)
        ):
            problems.append(f"{where}: default {default!r} outside min {low} .. max {high}")
    return problems


# --- where a survey variable is declared ---------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def playbook_tree(playbook: Path) -> list[Path]:
    """The playbook, the playbooks it imports, and its task files (playbooks/tasks/<stem>/)."""
    files, queue = [], [playbook]
    while queue:
        path = queue.pop(0)
        if path in files or not path.exists():
            continue
        files.append(path)
        for play in load_yaml(path) or []:
            imported = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
            if imported:
                queue.append((path.parent / imported).resolve())
        tasks_dir = path.parent / "tasks" / path.stem
        if tasks_dir.is_dir():
            files.extend(sorted(tasks_dir.rglob("*.yml")))
    return files


def _walk_tasks(tasks: Any) -> Iterator[dict[str, Any]]:
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        yield task
        for key in ("block", "rescue", "always"):
            yield from _walk_tasks(task.get(key))


def assert_conditions(files: list[Path]) -> list[str]:
    """Every condition of every assert task in the files."""
    out = []
    for path in files:
        doc = load_yaml(path) or []
        plays = doc if doc and isinstance(doc[0], dict) and ("hosts" in doc[0] or "tasks" in doc[0]) else []
        task_lists = [p.get(k) for p in plays for k in ("pre_tasks", "tasks", "post_tasks")] if plays else [doc]
        for tasks in task_lists:
            for task in _walk_tasks(tasks):
                assertion = task.get("ansible.builtin.assert") or task.get("assert")
                if isinstance(assertion, dict):
                    that = assertion.get("that", [])
                    out.extend([that] if isinstance(that, str) else that)
    return [" ".join(str(c).split()) for c in out]


def play_vars(files: list[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in files:
        doc = load_yaml(path) or []
        for play in doc:
            if isinstance(play, dict) and "hosts" in play:
                out.update(play.get("vars") or {})
    return out


@functools.cache
def role_options() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every option of every entry point of every role: name -> (role, option spec)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for path in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        for entry in (load_yaml(path).get("argument_specs") or {}).values():
            for name, option in ((entry or {}).get("options") or {}).items():
                out[name] = (path.parts[-3], option)
    return out


@functools.cache
def inventory_vars() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted(REPO.glob("inventories/*/group_vars/all/*.yml")):
        if path.read_text().startswith("$ANSIBLE_VAULT;"):  # ciphertext (the example's vault.yml)
            continue
        out.update(load_yaml(path) or {})
    return out


@dataclass(frozen=True)
class Declaration:
    source: str  # where: "<playbook> vars", "role <role> argument_specs", "inventory group_vars"
    type: str  # str, int, float, bool, list, dict
    choices: tuple[Any, ...] | None  # allowed values (for a list: of its elements), None: any


def _literal_type(value: Any) -> str:
    for kind, name in ((bool, "bool"), (int, "int"), (float, "float"), (list, "list"), (dict, "dict")):
        if isinstance(value, kind):
            return name
    return "str"


def _choices_from_asserts(var: str, conditions: list[str], lists: dict[str, Any]) -> tuple[Any, ...] | None:
    """Allowed values from an assert: ``var in LIST``, ``var | difference(LIST) | length == 0``
    or ``var is subset(LIST)``, LIST a literal or a play variable holding a list."""
    patterns = (
        rf"^{var} in (?P<list>.+)$",
        rf"^{var} \| difference\((?P<list>.+)\) \| length == 0$",
        rf"^{var} is subset\((?P<list>.+)\)$",
    )
    for condition in conditions:
        for pattern in patterns:
            match = re.match(pattern, condition)
            if not match:
                continue
            text = match["list"].strip()
            if isinstance(lists.get(text), list):
                return tuple(lists[text])
            with contextlib.suppress(ValueError, SyntaxError):
                value = ast.literal_eval(text)
                if isinstance(value, list):
                    return tuple(value)
    return None


def declaration(var: str, playbook: Path) -> Declaration | None:
    """Where ``var`` is declared for ``playbook``, its type and its allowed values."""
    files = playbook_tree(playbook)
    text = "\n".join(path.read_text() for path in files)
    pvars = play_vars(files)
    conditions = assert_conditions(files)
    if var in role_options():
        owner, option = role_options()[var]
        return Declaration(f"role {owner} argument_specs", option.get("type", "str"),
                           tuple(option["choices"]) if option.get("choices") else None)  # fmt: skip
    if var in pvars:
        value, source = pvars[var], f"{_rel(playbook)} vars"
    elif var in inventory_vars() and re.search(rf"\b{var}\b", text):
        value, source = inventory_vars()[var], "inventory group_vars"
    else:
        return None
    kind = _literal_type(value)
    if isinstance(value, str) and "{{" in value:
        coerced = re.search(_coercion(var, "int|float|bool"), text)
        kind = coerced[1] if coerced else "str"
    return Declaration(source, kind, _choices_from_asserts(var, conditions, pvars))


def _coercion(var: str, filters: str) -> str:
    """``var | int``, also after a default: ``var | default(5) | int``."""
    return rf"\b{var}\s*(?:\|\s*default\([^)]*\)\s*)?\|\s*({filters})\b"


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def coerced_with_bool(var: str, playbook: Path) -> bool:
    text = "\n".join(path.read_text() for path in playbook_tree(playbook))
    return re.search(_coercion(var, "bool"), text) is not None


def survey_declaration_problems(question: dict[str, Any], playbook: Path) -> list[str]:
    """A survey question against the variable it sets: declared, same type, same choices."""
    var, qtype = question["variable"], question["type"]
    where = f"survey variable {var!r} ({qtype})"
    if not playbook.exists():
        return [f"{where}: {_rel(playbook)} does not exist"]
    decl = declaration(var, playbook)
    if decl is None:
        return [f"{where}: declared neither in {_rel(playbook)} (its vars, or a task file's use of an "
                "inventory variable) nor in any role's meta/argument_specs.yml"]  # fmt: skip
    choices = question.get("choices")
    choices = choices.splitlines() if isinstance(choices, str) else choices
    problems = []
    expected = {"text": {"str", "path"}, "textarea": {"str", "path"}, "password": {"str"},
                "integer": {"int"}, "float": {"float", "int"}, "multiselect": {"list"}}  # fmt: skip
    if qtype == "multiplechoice" and decl.type == "bool":
        if sorted(choices or []) != ["false", "true"]:
            problems.append(f"{where}: {decl.source} says bool; the choices must be 'true' and 'false', not {choices}")
        if not coerced_with_bool(var, playbook):
            problems.append(f"{where}: the survey passes the text 'true'/'false'; {_rel(playbook)} "
                            f"must read it as `{var} | bool`")  # fmt: skip
        return problems
    if qtype == "multiplechoice":
        if decl.type != "str":
            problems.append(f"{where}: {decl.source} says {decl.type}, a multiplechoice answer is a str")
    elif decl.type not in expected[qtype]:
        problems.append(f"{where}: {decl.source} says {decl.type}, the survey gives {qtype}")
    if qtype in ("multiplechoice", "multiselect"):
        if decl.choices is None:
            problems.append(f"{where}: {decl.source} names no allowed values (choices in the spec, or an assert "
                            f"`{var} in LIST` / `{var} | difference(LIST) | length == 0`)")  # fmt: skip
        elif sorted(map(str, decl.choices)) != sorted(map(str, choices or [])):
            problems.append(f"{where}: choices {choices} differ from {decl.source}'s {list(decl.choices)}")
    if decl.source == "inventory group_vars" and "default" in question:
        problems.append(f"{where}: a default would always be passed and override the inventory's "
                        f"{inventory_vars()[var]!r}; leave it out (an empty answer passes nothing)")  # fmt: skip
    return problems

"""awx/ and playbooks/awx_configure.yml, checked without a controller (there is none here).

- Every awx.awx call the playbook makes, rendered per item of awx/ as
  ansible-playbook renders it, passes the module's own argument_spec
  (ansible.module_utils' ArgumentSpecValidator, with the module's
  mutually_exclusive/required_if): what the module would reject before
  sending a request is caught here.
- Every key of awx/ reaches a module (no silently ignored typo), every name
  the objects refer to exists, credentials carry no secret.
- Every job template's playbook exists and passes ``--syntax-check``.
- Every survey passes AWX's own survey rules, and every question sets a
  variable that the playbook or a role declares, with the same type and the
  same allowed values (read from the playbook's asserts, the roles'
  argument_specs or the inventory, never repeated here).
- The deploy → verify → notify workflow has that shape.
- The playbook stops before any awx.awx task when CONTROLLER_HOST or
  CONTROLLER_OAUTH_TOKEN is missing, naming it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from awx_checks import (
    CONFIGURE,
    REPO,
    Call,
    argument_problems,
    awx_data,
    calls,
    configure_play,
    declaration,
    item_keys_used,
    module_tasks,
    survey_declaration_problems,
    survey_rule_problems,
)

DATA = awx_data()
JOB_TEMPLATES = DATA["awx_job_templates"]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
# Every environment variable a credential's inputs come from, set while rendering.
CREDENTIAL_ENV = {
    name: f"test-value-of-{name}" for cred in DATA["awx_credentials"] for name in cred["inputs_from_env"].values()
}
# AWX's built-in credential types the data may name (a custom one must be in awx_credential_types).
BUILTIN_CREDENTIAL_TYPES = {"Machine", "Vault", "Amazon Web Services", "Source Control",
                            "OpenShift or Kubernetes API Bearer Token"}  # fmt: skip


@pytest.fixture(scope="module")
def rendered() -> list[Call]:
    return calls(CREDENTIAL_ENV)


def template_id(template: dict[str, Any]) -> str:
    return template["name"]


# --- every awx.awx call is valid for its module -----------------------------------


def test_every_call_passes_the_module_argument_spec(rendered: list[Call]) -> None:
    problems = [
        f"{call.task} [{call.label}] awx.awx.{call.module}: {message}"
        for call in rendered
        for message in argument_problems(call.module, call.args)
    ]
    assert not problems, "\n".join(problems)


def test_every_item_of_awx_is_applied(rendered: list[Call]) -> None:
    """One call per item of each list the playbook loops over, none skipped."""
    play = configure_play()
    expected = 0
    for task, _module in module_tasks(play):
        if "loop" in task:
            (source,) = re.findall(r"\{\{\s*(\w+)\s*\}\}", task["loop"])
            expected += len(DATA[source])
        else:
            expected += 1
    assert len(rendered) == expected
    assert {c.label for c in rendered if c.module == "job_template"} == {t["name"] for t in JOB_TEMPLATES}


def test_every_key_of_awx_reaches_a_module() -> None:
    """A key no task reads (a typo such as `survey_enable`) would be ignored silently."""
    problems = []
    for task, module in module_tasks(configure_play()):
        if "loop" not in task:
            continue
        (source,) = re.findall(r"\{\{\s*(\w+)\s*\}\}", task["loop"])
        used = item_keys_used(task)
        for item in DATA[source]:
            unused = sorted(set(item) - used)
            if unused:
                problems.append(f"awx {source} {item.get('name', item.get('identifier'))!r}: {unused} "
                                f"not read by the task {task['name']!r} (awx.awx.{module})")  # fmt: skip
    assert not problems, "\n".join(problems)


def test_names_the_objects_refer_to_exist(rendered: list[Call]) -> None:
    def names(module: str) -> set[str]:
        return {c.args["name"] for c in rendered if c.module == module}

    known = {
        "inventory": names("inventory"), "project": names("project"), "credential": names("credential"),
        "execution_environment": names("execution_environment"), "organization": names("organization"),
        "job_template": names("job_template"), "credential_type": names("credential_type") | BUILTIN_CREDENTIAL_TYPES,
        "workflow_job_template": names("workflow_job_template"),
    }  # fmt: skip
    refs = {"inventory": "inventory", "project": "project", "source_project": "project",
            "execution_environment": "execution_environment", "default_environment": "execution_environment",
            "organization": "organization", "credential_type": "credential_type",
            "workflow_job_template": "workflow_job_template", "unified_job_template": "job_template"}  # fmt: skip
    problems = []
    for call in rendered:
        for key, kind in refs.items():
            is_own_name = key == "inventory" and call.module == "inventory"
            if key in call.args and call.args[key] not in known[kind] and not is_own_name:
                problems.append(f"{call.label}: {key} {call.args[key]!r} is not among {sorted(known[kind])}")
        for credential in call.args.get("credentials", []):
            if credential not in known["credential"]:
                problems.append(f"{call.label}: credential {credential!r} is not in awx/credentials.yml")
        if call.module == "inventory_source" and not (REPO / call.args["source_path"]).exists():
            problems.append(f"{call.label}: source_path {call.args['source_path']} is not in the repository")
    assert not problems, "\n".join(problems)


def test_credentials_carry_no_secret() -> None:
    """Inputs come only from environment variables named in awx/credentials.yml."""
    problems = []
    for cred in DATA["awx_credentials"]:
        extra = sorted(set(cred) - {"name", "description", "credential_type", "inputs_from_env"})
        if extra:
            problems.append(f"{cred['name']}: {extra} (only inputs_from_env may give inputs)")
        for field, env in cred["inputs_from_env"].items():
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", str(env)):
                problems.append(f"{cred['name']}: input {field} from {env!r}, not an environment variable name")
    assert not problems, "\n".join(problems)


def test_secret_inputs_are_not_logged() -> None:
    (task,) = [t for t, module in module_tasks(configure_play()) if module == "credential"]
    assert task.get("no_log") is True


# --- job templates: playbooks and surveys -------------------------------------------


def syntax_check(playbooks: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "--syntax-check", *playbooks], capture_output=True, text=True, timeout=600,
        cwd=REPO, env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
    )  # fmt: skip


@pytest.fixture(scope="module")
def syntax_ok() -> bool:
    """One ansible-playbook run over every template's existing playbook (each alone only when it fails)."""
    playbooks = sorted({t["playbook"] for t in JOB_TEMPLATES if (REPO / t["playbook"]).is_file()})
    return syntax_check(playbooks).returncode == 0


@pytest.mark.parametrize("template", JOB_TEMPLATES, ids=template_id)
def test_job_template_playbook_passes_syntax_check(template: dict[str, Any], syntax_ok: bool) -> None:
    playbook = template["playbook"]
    assert (REPO / playbook).is_file(), (
        f"{playbook} does not exist, and job template {template['name']!r} (awx/job_templates.yml) runs it"
    )
    if not syntax_ok:
        run = syntax_check([playbook])
        assert run.returncode == 0, f"{playbook} --syntax-check:\n{run.stdout}{run.stderr}"


def test_surveys_pass_awx_rules(rendered: list[Call]) -> None:
    surveyed = [c for c in rendered if c.args.get("survey_spec") is not None]
    assert {c.label for c in surveyed} == {t["name"] for t in JOB_TEMPLATES if "survey" in t}
    problems = [f"{c.label}: {p}" for c in surveyed for p in survey_rule_problems(c.args["survey_spec"])]
    problems += [f"{c.label}: survey_spec without survey_enabled" for c in surveyed if not c.args["survey_enabled"]]
    assert not problems, "\n".join(problems)


SURVEY_QUESTIONS = [
    pytest.param(t, q, id=f"{t['name']}:{q['variable']}") for t in JOB_TEMPLATES for q in t.get("survey", [])
]


@pytest.mark.parametrize(("template", "question"), SURVEY_QUESTIONS)
def test_survey_variable_is_declared_with_its_type_and_choices(template: dict[str, Any], question: dict) -> None:
    problems = survey_declaration_problems(question, REPO / template["playbook"])
    assert not problems, f"job template {template['name']!r}: " + "; ".join(problems)


def test_the_operator_choices_are_asked() -> None:
    """Drill scenario, targets, thresholds, dry run: what the issue says an operator chooses."""
    asked = {t["playbook"]: {q["variable"] for q in t.get("survey", [])} for t in JOB_TEMPLATES}
    drill = {"drill", "drill_target", "drill_duration_s"}
    assert drill | {"drill_pg_max_rejoin_s"} <= asked["playbooks/drill_postgres.yml"]
    assert drill | {"drill_redis_max_rejoin_s"} <= asked["playbooks/drill_redis.yml"]
    assert {"drill_restore_backup", "drill_restore_max_rto_s"} <= asked["playbooks/drill_restore.yml"]
    assert {"rolling_update_components", "rolling_update_dry_run"} <= asked["playbooks/rolling_update.yml"]
    deploy = next(t for t in JOB_TEMPLATES if t["playbook"] == "site.yml")
    assert deploy["ask_job_type_on_launch"] is True  # job type "check": the deploy's dry run


# --- the workflow -------------------------------------------------------------------


def test_workflow_is_deploy_then_verify_and_notify_on_failure() -> None:
    (workflow,) = DATA["awx_workflow_job_templates"]
    nodes = {n["identifier"]: n for n in DATA["awx_workflow_nodes"]}
    by_template = {n["unified_job_template"]: n for n in nodes.values()}
    playbook = {t["name"]: t["playbook"] for t in JOB_TEMPLATES}
    deploy = next(n for name, n in by_template.items() if playbook[name] == "site.yml")
    verify = next(n for name, n in by_template.items() if playbook[name] == "playbooks/verify.yml")
    notify = next(n for name, n in by_template.items() if playbook[name] == "playbooks/notify.yml")
    assert all(n["workflow_job_template"] == workflow["name"] for n in nodes.values())
    assert deploy.get("success_nodes") == [verify["identifier"]]
    assert deploy.get("failure_nodes") == [notify["identifier"]]
    assert verify.get("failure_nodes") == [notify["identifier"]]
    assert not verify.get("success_nodes") and not notify.get("success_nodes") and not notify.get("failure_nodes")
    # awx.awx links a node to children that exist: children come first
    order = list(nodes)
    for node in nodes.values():
        for child in node.get("success_nodes", []) + node.get("failure_nodes", []) + node.get("always_nodes", []):
            assert order.index(child) < order.index(node["identifier"]), f"{child} before {node['identifier']}"


# --- the playbook's own checks --------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "CONTROLLER_HOST and CONTROLLER_OAUTH_TOKEN not set"),
        ({"CONTROLLER_HOST": "https://awx.example.invalid"}, "CONTROLLER_OAUTH_TOKEN not set"),
        ({"CONTROLLER_OAUTH_TOKEN": "token"}, "CONTROLLER_HOST not set"),
    ],
)
def test_configure_stops_first_naming_the_missing_variable(env: dict[str, str], missing: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CONTROLLER_", "TOWER_"))}
    run = subprocess.run(
        [ANSIBLE_PLAYBOOK, str(CONFIGURE)], capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**clean, **env, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
    )  # fmt: skip
    assert run.returncode != 0
    assert f'"msg": "{missing}.' in run.stdout, run.stdout
    assert "ok=0" in run.stdout and "TASK [Organization]" not in run.stdout


# --- the checks catch what they are for ------------------------------------------------


def test_argument_check_catches_an_unknown_option_a_wrong_type_and_a_bad_choice() -> None:
    good = {"name": "t", "playbook": "site.yml", "verbosity": 1}
    assert argument_problems("job_template", good) == []
    problems = argument_problems("job_template", good | {"survey": [], "verbosity": 9, "forks": "many"})
    text = " ".join(problems)
    assert "survey" in text and "verbosity" in text and "forks" in text
    node = {"identifier": "x", "workflow_job_template": "w", "unified_job_template": "a", "approval_node": {}}
    assert any("mutually exclusive" in p for p in argument_problems("workflow_job_template_node", node))


GOOD_SURVEY = {"name": "s", "description": "", "spec": [
    {"question_name": "Q", "variable": "v", "type": "multiplechoice", "choices": ["a", "b"], "default": "a",
     "required": True},
    {"question_name": "N", "variable": "n", "type": "integer", "min": 1, "max": 5, "default": 3, "required": False},
]}  # fmt: skip


def _with(index: int, **changes: Any) -> dict[str, Any]:
    spec = [dict(q) for q in GOOD_SURVEY["spec"]]
    spec[index].update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del spec[index][key]
    return GOOD_SURVEY | {"spec": spec}


@pytest.mark.parametrize(
    ("survey", "expected"),
    [
        (_with(0, default="c"), "not among the choices"),
        (_with(0, default="a\nb"), "one default"),
        (_with(0, required=None), "['required'] missing"),
        (_with(0, type="boolean"), "is not one of"),
        (_with(1, default=9), "outside min 1 .. max 5"),
        (_with(1, default="3"), "is not a int"),
        (_with(1, variable="v"), "asked twice"),
        (GOOD_SURVEY | {"spec": []}, "no question"),
    ],
)
def test_survey_rules_catch(survey: dict[str, Any], expected: str) -> None:
    assert survey_rule_problems(GOOD_SURVEY) == []
    problems = survey_rule_problems(survey)
    assert any(expected in p for p in problems), problems


DRILL = REPO / "playbooks" / "drill_postgres.yml"
RESTORE = REPO / "playbooks" / "drill_restore.yml"


def test_declarations_come_from_the_playbook_the_roles_and_the_inventory() -> None:
    drill = declaration("drill", DRILL)
    assert drill is not None and drill.type == "str" and drill.source == "playbooks/drill_postgres.yml vars"
    assert drill.choices and "etcd_member_kill" in drill.choices  # the playbook's drill_scenarios
    duration = declaration("drill_duration_s", DRILL)
    assert duration is not None and duration.type == "int"  # a template, read with `| int`
    backup = declaration("drill_restore_backup", RESTORE)
    assert backup is not None and backup.choices == ("missing", "always")  # a literal list in an assert
    limit = declaration("drill_pg_max_rejoin_s", DRILL)
    assert limit is not None and (limit.source, limit.type) == ("inventory group_vars", "int")
    spec = declaration("patroni_postgres_ttl", DRILL)
    assert spec is not None and (spec.source, spec.type) == ("role patroni_postgres argument_specs", "int")
    assert declaration("drill_redis_max_rejoin_s", DRILL) is None  # an inventory variable this playbook never reads
    assert declaration("no_such_variable", DRILL) is None


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ({"variable": "drill", "type": "multiplechoice", "choices": ["kill", "stop"]}, "choices"),
        ({"variable": "drill", "type": "text"}, None),  # a str for a str: fine
        ({"variable": "drill_duration_s", "type": "text"}, "says int"),
        ({"variable": "drill_target", "type": "integer"}, "says str"),
        ({"variable": "drill_pg_max_rejoin_s", "type": "integer", "default": 60}, "override the inventory"),
        ({"variable": "drill_pg_max_rejoin_s", "type": "integer"}, None),
        ({"variable": "drill_redis_max_rejoin_s", "type": "integer"}, "declared neither"),
        ({"variable": "drill", "type": "multiselect", "choices": ["kill"]}, "says str"),
    ],
)
def test_declaration_check_catches(question: dict[str, Any], expected: str | None) -> None:
    problems = survey_declaration_problems(question, DRILL)
    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(("use", "expected"), [("when: dry_run", ["must read it as `dry_run | bool`"]),
                                                ("when: dry_run | bool", []),
                                                ("when: dry_run | default(true) | bool", [])])
def test_a_bool_asked_as_true_false_must_be_read_with_bool(tmp_path: Path, use: str, expected: list[str]) -> None:
    playbook = tmp_path / "p.yml"
    playbook.write_text(f"---\n- hosts: all\n  vars:\n    dry_run: true\n  tasks:\n    - name: t\n"
                        f"      ansible.builtin.debug:\n      {use}\n")  # fmt: skip
    question = {"variable": "dry_run", "type": "multiplechoice", "choices": ["true", "false"]}
    problems = survey_declaration_problems(question, playbook)
    assert [p for p in problems if any(e in p for e in expected)] == problems
    assert len(problems) == len(expected)
    wrong = survey_declaration_problems(question | {"choices": ["yes", "no"]}, playbook)
    assert any("must be 'true' and 'false'" in p for p in wrong)


def test_declaration_check_names_a_missing_playbook() -> None:
    problems = survey_declaration_problems({"variable": "x", "type": "text"}, REPO / "playbooks" / "nope.yml")
    assert problems == ["survey variable 'x' (text): playbooks/nope.yml does not exist"]

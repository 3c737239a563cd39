"""playbooks/preflight.yml against the example inventory (own VMs) and the lab's.

The example inventory (inventories/example, its vault opened with the
placeholder password it ships) passes preflight; a copy of it with one thing
broken (a host's ha_address missing, malformed or shared, a secret missing or
pointing at a vault variable that is not there) stops preflight with a
message that names the variable, the host and the rule. The lab inventory
still passes.

preflight changes nothing and reaches no host: its tasks are asserts and
set_fact. The runs still override ansible_connection=local, so that nothing
could ever try the example's placeholder addresses (203.0.113.0/24).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_cli import REPO, run_ansible_tool

EXAMPLE = REPO / "inventories" / "example"
LAB = REPO / "inventories" / "lab"
VAULT_PASSWORD = EXAMPLE / "vault-password.example.txt"
JSON_OUTPUT = {
    "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
    "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.json",
}
SECRET_ROLES = ("patroni_postgres", "redis_sentinel", "prometheus_alertmanager", "app_backend")


def preflight(inventory: Path, *args: str) -> tuple[int, list[dict[str, str]]]:
    """Run preflight; its exit code and every failure as {task, host, msg}."""
    proc = run_ansible_tool(
        "ansible-playbook",
        "-i",
        str(inventory),
        "--vault-password-file",
        str(VAULT_PASSWORD),
        "-e",
        "ansible_connection=local",
        *args,
        "playbooks/preflight.yml",
        env=JSON_OUTPUT,
    )
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook printed no JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    failures = [
        {"task": task["task"]["name"], "host": host, "msg": str(result.get("msg", ""))}
        for play in doc["plays"]
        for task in play["tasks"]
        for host, result in task["hosts"].items()
        if result.get("failed")
    ]
    return proc.returncode, failures


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of the example inventory to break (links resolved: drills.yml is the lab's)."""
    copy = tmp_path / "example"
    shutil.copytree(EXAMPLE, copy)
    return copy


def edit_hosts(inventory: Path, edit: Any) -> None:
    path = inventory / "hosts.yml"
    hosts = yaml.safe_load(path.read_text())
    edit(hosts["all"]["children"])
    path.write_text(yaml.safe_dump(hosts))


def edit_secrets(inventory: Path, edit: Any) -> None:
    path = inventory / "group_vars" / "all" / "secrets.yml"
    secrets = yaml.safe_load(path.read_text())
    edit(secrets)
    path.write_text(yaml.safe_dump(secrets))


def only_failure(failures: list[dict[str, str]], task: str) -> list[dict[str, str]]:
    """The failures, all from ``task`` (the first check that fails stops every host)."""
    assert failures, "preflight did not fail"
    assert {f["task"] for f in failures} == {task}, failures
    return failures


# --- passing ------------------------------------------------------------------------------


def test_the_example_inventory_passes_preflight():
    rc, failures = preflight(EXAMPLE)
    assert (rc, failures) == (0, [])


def test_the_lab_inventory_still_passes_preflight(tmp_path: Path):
    # a copy: the lab generates its secrets into <inventory>/.secrets on first use
    lab = tmp_path / "lab"
    shutil.copytree(LAB, lab, ignore=shutil.ignore_patterns(".secrets"))
    rc, failures = preflight(lab)
    assert (rc, failures) == (0, [])


def test_without_monitoring_its_secret_is_not_required(example: Path):
    edit_hosts(example, lambda groups: groups.pop("monitoring"))
    edit_secrets(example, lambda secrets: secrets.pop("prometheus_alertmanager_postgres_monitor_password"))
    rc, failures = preflight(example)
    assert (rc, failures) == (0, [])


def test_a_data_directory_on_the_packaged_cluster_is_refused_by_name(example: Path):
    # the default data directory is /var/lib/postgresql/<version>/<scope>: scope main meets Debian's own cluster
    rc, failures = preflight(example, "-e", "patroni_postgres_scope=main")
    assert rc != 0
    refused = only_failure(failures, "patroni_postgres : Check the data directory")
    for failure in refused:
        assert "patroni_postgres_data_dir is '/var/lib/postgresql/15/main'; rule:" in failure["msg"], failure


# --- ha_address ---------------------------------------------------------------------------

ADDRESS_TASK = "Check every host's ha_address"


def test_a_host_without_ha_address_stops_preflight_by_name(example: Path):
    edit_hosts(example, lambda groups: groups["zone_nodes"]["hosts"]["node-b"].pop("ha_address"))
    rc, failures = preflight(example)
    assert rc != 0
    (failure,) = only_failure(failures, ADDRESS_TASK)
    assert "node-b: ha_address is not set; rule: every host sets ha_address" in failure["msg"], failure
    assert "node-a" not in failure["msg"] and "lb-1" not in failure["msg"], failure


@pytest.mark.parametrize("bad", ["203.0.113.256", "node-b.example.org", "0.0.0.0", "203.0.113"])
def test_a_malformed_ha_address_stops_preflight_by_name(example: Path, bad: str):
    edit_hosts(example, lambda groups: groups["lb"]["hosts"]["lb-1"].update(ha_address=bad))
    rc, failures = preflight(example)
    assert rc != 0
    (failure,) = only_failure(failures, ADDRESS_TASK)
    assert f"lb-1: ha_address '{bad}'" in failure["msg"], failure
    assert "rule: a unicast IPv4 address" in failure["msg"], failure


def test_a_shared_ha_address_names_both_hosts(example: Path):
    edit_hosts(example, lambda groups: groups["monitoring"]["hosts"]["mon"].update(ha_address="203.0.113.12"))
    rc, failures = preflight(example)
    assert rc != 0
    (failure,) = only_failure(failures, ADDRESS_TASK)
    assert "node-b, mon: ha_address is 203.0.113.12 on each; rule: every host has its own address" in failure["msg"]


# --- secrets ------------------------------------------------------------------------------

SECRETS_TASK = "Check that every required secret is set"


def test_a_missing_secret_stops_preflight_on_every_host_that_needs_it(example: Path):
    edit_secrets(example, lambda secrets: secrets.pop("redis_sentinel_sentinel_password"))
    rc, failures = preflight(example)
    assert rc != 0
    failures = only_failure(failures, SECRETS_TASK)
    assert sorted(f["host"] for f in failures) == ["node-a", "node-b", "node-c"]  # redis_cluster, not mon or lb-1
    for failure in failures:
        assert failure["msg"].startswith(f"1 required secret(s) missing on {failure['host']}: "), failure
        assert "redis_sentinel_sentinel_password (the sentinels' own requirepass): not set" in failure["msg"]
        assert "Rule: set each from ansible-vault" in failure["msg"]


def test_a_secret_whose_vault_variable_is_missing_is_named_with_both_names(example: Path):
    edit_secrets(example, lambda secrets: secrets.update(app_backend_db_password="{{ vault_no_such_password }}"))
    rc, failures = preflight(example)
    assert rc != 0
    failures = only_failure(failures, SECRETS_TASK)
    assert sorted(f["host"] for f in failures) == ["lb-1", "node-a", "node-b", "node-c"]  # app and lb
    for failure in failures:
        assert re.search(
            r"app_backend_db_password \(the app's own PostgreSQL role\): does not resolve: .*vault_no_such_password",
            failure["msg"],
        ), failure


# --- what the example and preflight say agree with the roles ------------------------------


def required_secrets_of_the_roles() -> set[str]:
    names = set()
    for role in SECRET_ROLES:
        spec = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
        for name, option in spec["argument_specs"]["main"]["options"].items():
            if option.get("required") and "default" not in option:
                names.add(name)
    return names


def test_preflight_requires_exactly_the_secrets_the_roles_require_and_the_example_sets_them():
    play = yaml.safe_load((REPO / "playbooks" / "preflight.yml").read_text())[0]
    listed = [name for group in play["vars"]["_ha_required_secrets"].values() for name in group]
    assert len(listed) == len(set(listed)) == 11
    assert set(listed) == required_secrets_of_the_roles()
    example_secrets = yaml.safe_load((EXAMPLE / "group_vars" / "all" / "secrets.yml").read_text())
    assert set(example_secrets) == set(listed)
    assert all(re.fullmatch(r"\{\{ vault_[a-z_]+ \}\}", value) for value in example_secrets.values()), example_secrets


def test_the_example_ships_no_plaintext_secret_and_no_address_of_this_machines_network():
    assert (EXAMPLE / "group_vars" / "all" / "vault.yml").read_text().startswith("$ANSIBLE_VAULT;1.1;AES256\n")
    for path in EXAMPLE.rglob("*"):
        if path.is_file() and path.name != "vault.yml":
            text = path.read_text()
            assert "192.0.2." not in text, path
            assert "password: " not in text.replace('password: "{{ vault_', ""), path
    hosts = yaml.safe_load((EXAMPLE / "hosts.yml").read_text())["all"]["children"]
    addresses = [vars_["ha_address"] for group in hosts.values() for vars_ in (group.get("hosts") or {}).values()]
    assert len(addresses) == 5 and all(a.startswith("203.0.113.") for a in addresses), addresses

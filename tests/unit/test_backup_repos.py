"""Backup repositories of patroni_postgres on hosts (issue 15, item 7).

- preflight refuses a posix repository when the members are separate
  machines (the repository would exist on one of them only), and keeps it
  where every member runs on one machine (one address);
- S3-compatible repositories: endpoint, port, uri_style, ca_file,
  verify_tls and static keys (key_type shared, from two secret variables that
  preflight asks for by name) land in pgbackrest.conf as pgBackRest 2.45's
  options, which pgBackRest parses; the task that writes the file logs
  nothing when it holds keys;
- the Kubernetes platform refuses the hosts-only settings (key_type, ca_file);
- verify.yml's backup summary renders for a repository without a full
  backup (its age is None), so the assert's own message reaches the user.

Plays run the role's real preflight and template with ansible-playbook on
the controller: asserts and set_fact never connect, so members reached over
SSH need no machine here.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_cli import REPO, run_ansible_tool
from test_k8s_backup import render as render_k8s

TEMPLATE = REPO / "roles" / "patroni_postgres" / "templates" / "etc" / "pgbackrest" / "pgbackrest.conf.j2"
SECRETS = {
    "patroni_postgres_superuser_password": "s" * 20,
    "patroni_postgres_replication_password": "r" * 20,
    "patroni_postgres_rewind_password": "w" * 20,
    "patroni_postgres_restapi_password": "a" * 20,
}
KEY, KEY_SECRET = "AKIALABKEY0123456789", "lab-secret-0123456789-abcdefghijklmnopqrst"
S3_REPO = {
    "type": "s3",
    "region": "us-east-1",
    "endpoint": "198.20.0.20",
    "port": 9000,
    "uri_style": "path",
    "ca_file": "/etc/hastack/lab-s3-ca.crt",
    "key_type": "shared",
    "path": "/hastack",
}
S3_REPOS = [S3_REPO | {"bucket": "repo1"}, S3_REPO | {"bucket": "repo2"}]
KEYS = {"patroni_postgres_backup_s3_key": KEY, "patroni_postgres_backup_s3_key_secret": KEY_SECRET}
PLAYBOOK = """
- name: The role's preflight on the members
  hosts: postgres_cluster
  gather_facts: false
  tasks:
    - name: Preflight of patroni_postgres
      ansible.builtin.include_role:
        name: patroni_postgres
        tasks_from: preflight

- name: The member's pgbackrest.conf, rendered on the controller
  hosts: node-a
  gather_facts: false
  tasks:
    - name: Load the role's variables
      ansible.builtin.include_role:
        name: patroni_postgres
        tasks_from: backup_facts
        public: true
    - name: Render pgbackrest.conf
      ansible.builtin.template:
        src: {template}
        dest: {out}/pgbackrest.conf
        mode: "0600"
      delegate_to: localhost
"""


def run(tmp: Path, one_machine: bool = False, **extra: Any) -> tuple[int, str, Path]:
    """Preflight on node-a/b/c (distinct addresses, or one machine's with three ports), then the template."""
    hosts = {
        f"node-{z}": (
            {"ha_address": "198.20.1.11", "patroni_postgres_port": 5431 + i, "ha_zone": z}
            if one_machine
            else {"ha_address": f"198.20.{i}.1{i}", "ha_zone": z}
        )
        for i, z in enumerate("abc", start=1)
    }
    inventory = {
        "all": {
            "vars": {"ha_platform": "hosts", "ansible_connection": "local", **SECRETS},
            "children": {
                "postgres_cluster": {"hosts": hosts},
                "etcd_cluster": {"hosts": {h: {} for h in hosts}},
            },
        }
    }
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    (tmp / "play.yml").write_text(PLAYBOOK.format(template=TEMPLATE, out=tmp), encoding="utf-8")
    result = run_ansible_tool(
        "ansible-playbook", "-i", str(tmp / "hosts.yml"), str(tmp / "play.yml"), "-e", json.dumps(extra),
        env={"ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_NOCOLOR": "1"},
    )  # fmt: skip
    return result.returncode, " ".join((result.stdout + result.stderr).split()), tmp / "pgbackrest.conf"


def conf(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser["global"]


# --- posix repositories: one machine only ----------------------------------------


def test_posix_repositories_on_separate_machines_are_refused(tmp_path: Path) -> None:
    """The role's defaults (two posix directories) on three machines over SSH: the issue's setup."""
    rc, output, rendered = run(tmp_path)
    assert rc == 2, output[-3000:]
    assert "patroni_postgres_backup_repos has posix repositories" in output
    assert "node-a 198.20.1.11, node-b 198.20.2.12, node-c 198.20.3.13" in output
    assert "Rule: a repository every member reaches: s3" in output
    assert not rendered.exists()


def test_posix_repositories_on_one_machine_are_kept(tmp_path: Path) -> None:
    """Every member on one machine (one address): a posix directory is one every member reaches."""
    rc, output, rendered = run(tmp_path, one_machine=True)
    assert rc == 0, output[-3000:]
    glob = conf(rendered)
    assert glob["repo1-type"] == "posix" and glob["repo2-type"] == "posix"
    assert not any(key.startswith(("repo1-s3", "repo1-storage")) for key in glob)


# --- S3-compatible repositories and static keys ----------------------------------------


def test_s3_repositories_with_static_keys_render_pgbackrest_options(tmp_path: Path) -> None:
    rc, output, rendered = run(tmp_path, patroni_postgres_backup_repos=S3_REPOS, **KEYS)
    assert rc == 0, output[-3000:]
    glob = conf(rendered)
    for n, bucket in ((1, "repo1"), (2, "repo2")):
        assert glob[f"repo{n}-type"] == "s3"
        assert glob[f"repo{n}-s3-bucket"] == bucket
        assert glob[f"repo{n}-s3-endpoint"] == "198.20.0.20"
        assert glob[f"repo{n}-storage-port"] == "9000"
        assert glob[f"repo{n}-s3-uri-style"] == "path"
        assert glob[f"repo{n}-storage-ca-file"] == "/etc/hastack/lab-s3-ca.crt"
        assert f"repo{n}-storage-verify-tls" not in glob  # pgBackRest's default: verify
        assert glob[f"repo{n}-s3-key-type"] == "shared"
        assert glob[f"repo{n}-s3-key"] == KEY
        assert glob[f"repo{n}-s3-key-secret"] == KEY_SECRET
        assert glob[f"repo{n}-path"] == "/hastack"


def test_s3_defaults_are_aws_and_the_instance_profile(tmp_path: Path) -> None:
    repos = [{"type": "s3", "bucket": "b1", "region": "eu-west-1", "path": "/r"},
             {"type": "s3", "bucket": "b2", "region": "eu-central-1", "path": "/r", "verify_tls": False}]  # fmt: skip
    rc, output, rendered = run(tmp_path, patroni_postgres_backup_repos=repos)
    assert rc == 0, output[-3000:]
    glob = conf(rendered)
    assert glob["repo1-s3-endpoint"] == "s3.eu-west-1.amazonaws.com"
    assert glob["repo1-s3-key-type"] == "auto"
    assert "repo1-s3-key" not in glob and "repo1-storage-port" not in glob and "repo1-storage-ca-file" not in glob
    assert glob["repo2-storage-verify-tls"] == "n"


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        ({"patroni_postgres_backup_s3_key": KEY}, "patroni_postgres_backup_s3_key_secret is missing"),
        ({"patroni_postgres_backup_s3_key_secret": KEY_SECRET}, "patroni_postgres_backup_s3_key is missing"),
        ({}, "patroni_postgres_backup_s3_key is missing"),
    ],
    ids=["no-secret", "no-key", "neither"],
)
def test_static_keys_are_asked_for_by_name(tmp_path: Path, extra: dict[str, str], rule: str) -> None:
    rc, output, rendered = run(tmp_path, patroni_postgres_backup_repos=S3_REPOS, **extra)
    assert rc == 2, output[-3000:]
    assert rule in output
    assert "with key_type shared (repo1, repo2)" in output
    assert not rendered.exists()


@pytest.mark.parametrize(
    "bad",
    [{"port": 0}, {"endpoint": "https://198.20.0.20"}, {"endpoint": "198.20.0.20:9000"}, {"ca_file": "ca.crt"}],
    ids=["port", "scheme", "port-in-endpoint", "relative-ca-file"],
)
def test_bad_s3_settings_are_refused(tmp_path: Path, bad: dict[str, Any]) -> None:
    repos = [S3_REPOS[0] | bad, S3_REPOS[1]]
    rc, output, _ = run(tmp_path, patroni_postgres_backup_repos=repos, **KEYS)
    assert rc == 2, output[-3000:]
    assert "patroni_postgres_backup_repos has S3 settings pgBackRest cannot use" in output


def test_two_buckets_may_share_a_path_but_one_place_is_refused(tmp_path: Path) -> None:
    rc, output, _ = run(tmp_path, patroni_postgres_backup_repos=[S3_REPOS[0], S3_REPOS[0]], **KEYS)
    assert rc == 2, output[-3000:]
    assert "no two in one place" in output


@pytest.mark.skipif(shutil.which("pgbackrest") is None, reason="pgbackrest missing (Debian package pgbackrest)")
def test_pgbackrest_parses_the_s3_options(tmp_path: Path) -> None:
    """pgBackRest 2.45 accepts every option; the request goes to the endpoint (a closed port on
    loopback here) and fails there, not on the configuration."""
    repos = [S3_REPO | {"bucket": "repo1", "endpoint": "127.0.0.1", "port": 9, "ca_file": str(tmp_path / "ca.crt")}]
    rc, output, rendered = run(tmp_path, patroni_postgres_backup_repos=repos, **KEYS)
    assert rc == 0, output[-3000:]
    text = rendered.read_text(encoding="utf-8")
    for key in ("spool-path", "lock-path", "log-path"):
        text = text.replace(f"{key}=", f"{key}={tmp_path}", 1)
    rendered.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PGBACKREST_"))}
    proc = subprocess.run(
        ["pgbackrest", f"--config={rendered}", "--stanza=hastack", "--log-level-console=error",
         "--log-level-file=off", "--output=json", "info"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (repo,) = json.loads(proc.stdout)[0]["repo"]
    message = repo["status"]["message"]
    assert "127.0.0.1:9" in message or "ca.crt" in message or "CA" in message, message
    assert "option" not in message.lower(), message


def test_the_config_task_logs_nothing_when_it_holds_keys() -> None:
    tasks = yaml.safe_load((REPO / "roles" / "patroni_postgres" / "tasks" / "backup.yml").read_text(encoding="utf-8"))
    (task,) = [t for t in tasks if t["name"].startswith("Write pgbackrest.conf")]
    assert task["no_log"] == "{{ _patroni_postgres_backup_s3_shared }}"
    assert task["ansible.builtin.template"]["owner"] == "root"
    assert task["ansible.builtin.template"]["mode"] == "{{ '0640' if _patroni_postgres_backup_s3_shared else '0644' }}"


# --- Kubernetes: unchanged, and the hosts-only settings refused ------------------------------


@pytest.mark.parametrize("setting", [{"key_type": "shared"}, {"ca_file": "/etc/ssl/ca.crt"}])
def test_kubernetes_refuses_hosts_only_settings(tmp_path: Path, setting: dict[str, str]) -> None:
    repos = [{"type": "s3", "bucket": "b", "region": "eu-west-1", "path": "/r"} | setting]
    result = render_k8s(tmp_path / "out", patroni_postgres_backup_repos=repos)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, output[-3000:]
    assert "patroni_postgres_backup_repos sets key_type or ca_file; rule: on Kubernetes they do not apply" in output
    assert not (tmp_path / "out").exists()


# --- verify.yml -----------------------------------------------------------------------


def test_verify_summary_renders_a_repository_without_a_full_backup() -> None:
    """The success message is templated even when the assert fails; a None age must not crash it."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    plays = yaml.safe_load((REPO / "playbooks" / "verify.yml").read_text(encoding="utf-8"))
    (block,) = [t for p in plays for t in p.get("tasks", []) if t.get("name") == "Check the backups on the leader"]
    (task,) = [t for t in block["block"] if t["name"] == "Assert the backups are usable"]
    wal = "000000010000000000000009"
    summary = {"repos": [
        {"repo": 1, "last_full_backup": "20261207-020000F", "last_full_age_s": 7200.0, "wal_max": wal},
        {"repo": 2, "last_full_backup": None, "last_full_age_s": None, "wal_max": None},
    ]}  # fmt: skip
    templar = Templar(loader=DataLoader(), variables={"_summary": summary})
    message = templar.template(trust_as_template(task["ansible.builtin.assert"]["success_msg"]))
    assert "repo1 last full 20261207-020000F (2.0 h old)" in message
    assert "repo2 last full none" in message

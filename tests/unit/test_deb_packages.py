"""hastack.ha.deb_packages: dpkg is asked first, apt only gets what is missing.

The parser is checked with dpkg's real output format; the action runs for real
through ansible against this (Debian) machine, in check mode where it could
install something.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from ansible_cli import run_ansible_tool
from ansible_collections.hastack.ha.plugins.module_utils.deb_packages import (
    dpkg_query_command,
    installed_packages,
    missing_packages,
)


def test_only_healthy_installs_count_and_the_order_is_kept():
    out = "ii coreutils\niU half-configured\nrc removed-but-configs\nii libc6:amd64\n"
    assert installed_packages(out) >= {"coreutils", "libc6", "libc6:amd64"}
    names = ["zsh-missing", "coreutils", "half-configured", "removed-but-configs", "libc6", "zsh-missing"]
    assert missing_packages(names, out) == ["zsh-missing", "half-configured", "removed-but-configs"]


@pytest.mark.parametrize("name", ["coreutils=9.1-1", "coreutils/bookworm", "coreut*", "./coreutils.deb"])
def test_a_version_release_wildcard_or_path_always_goes_to_apt(name):
    assert missing_packages([name], "ii coreutils\n") == [name]


def test_the_query_runs_against_this_machines_dpkg():
    names = ["coreutils", "hastack-no-such-package", "it's; quoted"]
    proc = subprocess.run(dpkg_query_command(names), shell=True, capture_output=True, text=True, check=False)
    assert proc.returncode == 1, proc.stderr  # 1: some names are unknown to dpkg
    assert missing_packages(names, proc.stdout) == ["hastack-no-such-package", "it's; quoted"]


def run_action(*args: str) -> dict:
    json_output = {
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.json",
    }
    proc = run_ansible_tool(
        "ansible", "localhost", "-c", "local", "-m", "hastack.ha.deb_packages", *args, env=json_output
    )
    doc = json.loads(proc.stdout)
    return doc["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_installed_packages_are_a_no_op_without_apt():
    result = run_action("-a", "name=coreutils,dpkg")
    assert result["changed"] is False and result["missing"] == [], result
    assert "invocation" not in result  # answered by dpkg: the apt module never ran


def test_a_missing_package_goes_to_apt_which_names_it():
    result = run_action("--check", "-a", "name=coreutils,hastack-no-such-package")
    assert result.get("failed") is True, result
    assert result["missing"] == ["hastack-no-such-package"]
    assert "hastack-no-such-package" in result["msg"]
    assert result["invocation"]["module_args"]["name"] == ["hastack-no-such-package"]


def test_an_unknown_option_is_refused_by_name():
    result = run_action("-a", "name=coreutils cache_valid=5")
    assert result.get("failed") is True and "cache_valid" in result["msg"], result

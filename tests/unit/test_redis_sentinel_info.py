"""hastack.ha.redis_sentinel_info run in-process (and once under ansible) against a real
Redis master, replica and Sentinel on 127.77.1.1 (fixtures/redis/redis_unit_lab.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.hastack.ha.plugins.filter.redis import redis_problems
from ansible_collections.hastack.ha.plugins.modules import redis_sentinel_info

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "redis"))
from redis_unit_lab import HOST, REDIS_SERVER, RedisLab, free_port, redis_lab

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab() -> Iterator[RedisLab]:
    if not REDIS_SERVER.exists():
        pytest.skip(f"Redis is not installed ({REDIS_SERVER} missing): apt-get install -y redis-server")
    with redis_lab() as running:
        yield running


def lab_args(lab: RedisLab, **extra: Any) -> dict[str, Any]:
    return {
        "master_name": lab.master_name,
        "sentinels": [{"name": "s1", "host": lab.host, "port": lab.sentinel_port}],
        "redis": [
            {"name": "m", "host": lab.host, "port": lab.master_port},
            {"name": "r", "host": lab.host, "port": lab.replica_port},
        ],
        "password": lab.password,
        "sentinel_password": lab.sentinel_password,
        "timeout": 1.0,
    } | extra


def run_module(capsys: pytest.CaptureFixture[str], args: dict[str, Any]) -> dict[str, Any]:
    with patch_module_args(args), pytest.raises(SystemExit):
        redis_sentinel_info.main()
    return json.loads(capsys.readouterr().out)


def test_returns_the_whole_deployment_unchanged(capsys, lab):
    result = run_module(capsys, lab_args(lab))

    assert not result.get("failed"), result
    assert result["changed"] is False
    info = result["info"]
    master = f"{lab.host}:{lab.master_port}"
    assert info["master_name"] == lab.master_name
    assert info["master"] == master
    assert info["masters"] == [master]
    assert info["errors"] == {}
    assert [r["role"] for r in info["redis"]] == ["master", "slave"]
    assert info["sentinels"][0]["ckquorum"]["ok"] is True
    assert set(info) == {"master_name", "master", "masters", "sentinels", "redis", "errors"}
    # one sentinel and one replica: healthy by those counts, and the filter agrees
    assert redis_problems(info, expected_replicas=1, expected_sentinels=1) == []


def test_runs_in_check_mode(capsys, lab):
    result = run_module(capsys, lab_args(lab, _ansible_check_mode=True))

    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["info"]["master"] == f"{lab.host}:{lab.master_port}"


def test_ports_default_to_6379_and_26379(capsys, lab):
    result = run_module(
        capsys,
        lab_args(lab, sentinels=[{"host": HOST}], redis=[{"host": lab.host, "port": lab.master_port}]),
    )

    assert not result.get("failed"), result
    assert result["info"]["sentinels"][0]["address"] == f"{HOST}:26379"
    assert result["info"]["sentinels"][0]["name"] == f"{HOST}:26379"
    assert result["info"]["redis"][0]["reachable"] is True


def test_dead_members_are_reported_but_do_not_fail(capsys, lab):
    dead = free_port()
    args = lab_args(lab)
    args["redis"].append({"name": "gone", "host": HOST, "port": dead})
    result = run_module(capsys, args)

    assert not result.get("failed"), result
    assert list(result["info"]["errors"]) == [f"{HOST}:{dead}"]
    assert result["info"]["redis"][2]["reachable"] is False


def test_fails_when_nobody_answers_and_names_each_member(capsys):
    dead = [free_port(), free_port()]
    result = run_module(
        capsys,
        {
            "master_name": "x",
            "sentinels": [{"host": HOST, "port": dead[0]}],
            "redis": [{"host": HOST, "port": dead[1]}],
            "timeout": 0.5,
        },
    )

    assert result["failed"] is True
    assert result["changed"] is False
    for port in dead:
        assert f"{HOST}:{port}: connection refused" in result["msg"]
    assert len(result["errors"]) == 2


def test_wrong_passwords_fail_and_say_which(capsys, lab):
    result = run_module(capsys, lab_args(lab, password="wrong-wrong-wrong", sentinel_password="wrong-wrong-wrong"))

    assert result["failed"] is True
    assert "(sentinel password)" in result["msg"]
    assert "(Redis password)" in result["msg"]


def test_no_endpoints_fail(capsys):
    result = run_module(capsys, {"master_name": "x"})

    assert result["failed"] is True
    assert "no endpoints" in result["msg"]


def test_master_name_is_required(capsys):
    result = run_module(capsys, {"sentinels": [{"host": HOST}]})

    assert result["failed"] is True
    assert "master_name" in result["msg"]


def test_passwords_are_not_logged(capsys, lab):
    result = run_module(capsys, lab_args(lab))

    assert not result.get("failed"), result
    args = result["invocation"]["module_args"]
    assert args["password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert args["sentinel_password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    text = json.dumps(result)
    assert lab.password not in text
    assert lab.sentinel_password not in text


def test_module_runs_under_ansible(lab):
    """The real packaging path: AnsiballZ must ship the module_utils client with the module."""
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local",
         "-i", "localhost,", "-m", "hastack.ha.redis_sentinel_info",
         "-a", json.dumps(lab_args(lab)), "--check",
         "-e", f"ansible_python_interpreter={sys.executable}"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.split("=>", 1)[1])
    assert result["changed"] is False
    assert result["info"]["master"] == f"{lab.host}:{lab.master_port}"

"""Configuration checks: every bad value is named with its rule, before the app starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hastack_app.config import ConfigError, Endpoint, load_config

GOOD = {
    "HASTACK_APP_DB_HOSTS": "127.0.0.11,127.0.0.12:5433",
    "HASTACK_APP_DB_PASSWORD": "x" * 20,
    "HASTACK_APP_REDIS_SENTINELS": "127.0.0.11:26379,127.0.0.12",
    "HASTACK_APP_REDIS_PASSWORD": "y" * 20,
    "HASTACK_APP_REDIS_SENTINEL_PASSWORD": "z" * 20,
    "HASTACK_APP_STORAGE_PATH": "/var/lib/app",
}


def test_defaults_and_multi_host_conninfo() -> None:
    config = load_config(GOOD)
    assert config.db_hosts == (Endpoint("127.0.0.11", 5432), Endpoint("127.0.0.12", 5433))
    assert config.redis_sentinels[1] == Endpoint("127.0.0.12", 26379)
    assert (config.cache_ttl_s, config.db_breaker.failure_threshold, config.db_breaker.recovery_s) == (3600, 5, 10)
    assert config.cache_breaker.success_threshold == 2
    conninfo = config.db_conninfo()
    assert "host=127.0.0.11,127.0.0.12" in conninfo and "port=5432,5433" in conninfo
    assert "target_session_attrs=read-write" in conninfo
    # dead peers (dropped packets) are noticed within seconds: the query timeout, keepalives
    assert "tcp_user_timeout=3000" in conninfo and "keepalives_idle=10" in conninfo, conninfo


def test_degraded_reads_go_to_the_members_by_default_or_to_their_own_hosts() -> None:
    config = load_config(GOOD)
    assert config.db_read_hosts == config.db_hosts and config.db_read_pool_max == 4
    read = config.db_read_conninfo()
    assert "target_session_attrs=prefer-standby" in read and "load_balance_hosts=random" in read, read
    assert "host=127.0.0.11,127.0.0.12" in read and "tcp_user_timeout=3000" in read
    own = load_config({**GOOD, "HASTACK_APP_DB_READ_HOSTS": "pg-replica.svc", "HASTACK_APP_DB_READ_POOL_MAX": "0"})
    assert own.db_read_hosts == (Endpoint("pg-replica.svc", 5432),) and own.db_read_pool_max == 0
    with pytest.raises(ConfigError, match=r"HASTACK_APP_DB_READ_MAX_LAG_S=-1.0; rule: a number in \[0, 86400\]"):
        load_config({**GOOD, "HASTACK_APP_DB_READ_MAX_LAG_S": "-1"})


def test_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-a-file-secret\n")
    env = {k: v for k, v in GOOD.items() if k != "HASTACK_APP_DB_PASSWORD"}
    assert load_config({**env, "HASTACK_APP_DB_PASSWORD_FILE": str(secret)}).db_password == "from-a-file-secret"
    with pytest.raises(ConfigError, match=r"HASTACK_APP_DB_PASSWORD_FILE=.*cannot read"):
        load_config({**env, "HASTACK_APP_DB_PASSWORD_FILE": str(tmp_path / "missing")})


def test_env_file_beneath_the_environment(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("# the role writes this\n\nHASTACK_APP_CACHE_TTL_S=120\nHASTACK_APP_LOG_LEVEL=DEBUG\n")
    config = load_config({**GOOD, "HASTACK_APP_ENV_FILE": str(env_file), "HASTACK_APP_LOG_LEVEL": "ERROR"})
    assert (config.cache_ttl_s, config.log_level) == (120, "ERROR")
    env_file.write_text("HASTACK_APP_CACHE_TTL_S 120\n")
    with pytest.raises(ConfigError, match=r"HASTACK_APP_ENV_FILE=.*line 1: not NAME=value"):
        load_config({**GOOD, "HASTACK_APP_ENV_FILE": str(env_file)})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"HASTACK_APP_DB_HOSTS": None}, r"HASTACK_APP_DB_HOSTS is not set; rule: required"),
        ({"HASTACK_APP_REDIS_PASSWORD": None}, r"HASTACK_APP_REDIS_PASSWORD \(or HASTACK_APP_REDIS_PASSWORD_FILE\)"),
        ({"HASTACK_APP_DB_HOSTS": "a:5432,b:99999"}, r"HASTACK_APP_DB_HOSTS=.*'b:99999' is not host\[:port\]"),
        ({"HASTACK_APP_DB_HOSTS": "a,a"}, r"HASTACK_APP_DB_HOSTS=.*every endpoint once"),
        ({"HASTACK_APP_DB_PASSWORD": "short"}, r"HASTACK_APP_DB_PASSWORD is shorter than 8"),
        ({"HASTACK_APP_CACHE_TTL_S": "0"}, r"HASTACK_APP_CACHE_TTL_S=0; rule: an integer in \[1, "),
        ({"HASTACK_APP_DB_BREAKER_FAILURES": "five"}, r"HASTACK_APP_DB_BREAKER_FAILURES='five'; rule: an integer"),
        ({"HASTACK_APP_CACHE_BREAKER_RECOVERY_S": "-1"}, r"HASTACK_APP_CACHE_BREAKER_RECOVERY_S=-1.0; rule: a number"),
        ({"HASTACK_APP_DB_POOL_MIN": "20"}, r"HASTACK_APP_DB_POOL_MIN=20 > HASTACK_APP_DB_POOL_MAX=10"),
        ({"HASTACK_APP_STORAGE_PATH": "relative/dir"}, r"HASTACK_APP_STORAGE_PATH=relative/dir; rule: an absolute"),
        ({"HASTACK_APP_LOG_LEVEL": "LOUD"}, r"HASTACK_APP_LOG_LEVEL='LOUD'; rule: must match"),
        ({"HASTACK_APP_DB_NAME": "bad-name"}, r"HASTACK_APP_DB_NAME='bad-name'"),
    ],
)
def test_bad_values_name_the_variable_and_the_rule(change: dict[str, str | None], message: str) -> None:
    env = {**GOOD, **change}
    env = {k: v for k, v in env.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        load_config(env)


def test_the_process_refuses_to_start_with_a_clear_error() -> None:
    env = {k: v for k, v in GOOD.items() if k != "HASTACK_APP_REDIS_SENTINELS"}
    done = subprocess.run(
        [sys.executable, "-m", "hastack_app"],
        env=env,
        cwd=Path(__file__).resolve().parents[3] / "app",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "configuration error: HASTACK_APP_REDIS_SENTINELS is not set" in done.stderr

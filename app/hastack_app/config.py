"""Configuration from environment variables, validated once at start.

Every variable is ``HASTACK_APP_<NAME>``. A secret may instead come from a file
named by ``HASTACK_APP_<NAME>_FILE`` (a Kubernetes Secret mounted as a file).
``HASTACK_APP_ENV_FILE`` names a file of ``NAME=value`` lines read beneath the
environment (the environment wins): on hosts the role writes one, readable by
the app only, so a changed setting is a changed file that a rolling restart
applies, not a changed service definition. A bad or missing value raises
``ConfigError`` naming the variable and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PREFIX = "HASTACK_APP_"
_HOSTPORT = re.compile(r"^(?P<host>[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# An inventory host name on hosts; the pod's name on Kubernetes (the downward
# API), which Kubernetes keeps to 63 characters whatever app_backend_k8s_name is.
_INSTANCE = re.compile(r"^[A-Za-z0-9._-]{1,63}$")


class ConfigError(ValueError):
    """A variable is missing or breaks its rule; the message names both."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class BreakerSettings:
    failure_threshold: int = 5
    recovery_s: float = 10.0
    success_threshold: int = 2


@dataclass(frozen=True)
class Config:
    instance: str
    listen_host: str
    listen_port: int
    keepalive_s: int
    max_body_bytes: int
    db_hosts: tuple[Endpoint, ...]
    db_name: str
    db_user: str
    db_password: str
    db_connect_timeout_s: int
    db_timeout_s: float
    db_pool_min: int
    db_pool_max: int
    db_read_hosts: tuple[Endpoint, ...]
    db_read_pool_max: int
    db_read_max_lag_s: float
    redis_sentinels: tuple[Endpoint, ...]
    redis_master_name: str
    redis_password: str
    redis_sentinel_password: str
    redis_timeout_s: float
    redis_pool_max: int
    cache_ttl_s: int
    local_cache_ttl_s: float
    local_cache_size: int
    storage_path: Path
    ready_check_timeout_s: float
    ready_cache_s: float
    db_breaker: BreakerSettings
    cache_breaker: BreakerSettings
    log_level: str

    def db_conninfo(self) -> str:
        """libpq multi-host conninfo: the first host that accepts writes wins."""
        return self._conninfo(self.db_hosts, target_session_attrs="read-write")

    def db_read_conninfo(self) -> str:
        """The degraded-read pool's conninfo: a standby if any answers (in a
        random order, so instances spread over them), else whatever answers."""
        return self._conninfo(self.db_read_hosts, target_session_attrs="prefer-standby", load_balance_hosts="random")

    def _conninfo(self, hosts: tuple[Endpoint, ...], **attrs: str) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=",".join(e.host for e in hosts),
            port=",".join(str(e.port) for e in hosts),
            dbname=self.db_name,
            user=self.db_user,
            password=self.db_password,
            connect_timeout=self.db_connect_timeout_s,
            application_name=f"hastack-app-{self.instance}"[:63],
            # A connection whose peer's packets are dropped (its zone cut off)
            # must fail in seconds, not when TCP gives up (about 15 min): data
            # unacknowledged for the query timeout, or an idle connection
            # unanswered for 10 + 3 x 2 s, closes it. Without this, pooled
            # connections in retransmission backoff outlived a partition's heal
            # and timed out requests after it (zone drill).
            tcp_user_timeout=int(self.db_timeout_s * 1000),
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=2,
            keepalives_count=3,
            **attrs,
        )


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = environ

    def raw(self, name: str, default: str | None = None, secret: bool = False) -> str:
        var = PREFIX + name
        value = self.env.get(var)
        if secret and value is None and (PREFIX + name + "_FILE") in self.env:
            path = Path(self.env[PREFIX + name + "_FILE"])
            try:
                value = path.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{var}_FILE={path}: cannot read the file ({exc.strerror})") from exc
            var = var + "_FILE"
        if value is None or value == "":
            if default is None:
                hint = f" (or {PREFIX}{name}_FILE)" if secret else ""
                raise ConfigError(f"{var}{hint} is not set; rule: required, no default")
            return default
        return value

    def text(self, name: str, default: str | None = None, pattern: re.Pattern[str] | None = None) -> str:
        value = self.raw(name, default)
        if pattern is not None and not pattern.match(value):
            raise ConfigError(f"{PREFIX}{name}={value!r}; rule: must match {pattern.pattern}")
        return value

    def secret(self, name: str, min_length: int = 8) -> str:
        value = self.raw(name, secret=True)
        if len(value) < min_length:
            raise ConfigError(f"{PREFIX}{name} is shorter than {min_length} characters; rule: >= {min_length}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw(name, str(default))
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name}={value!r}; rule: an integer in [{low}, {high}]") from None
        if not low <= number <= high:
            raise ConfigError(f"{PREFIX}{name}={number}; rule: an integer in [{low}, {high}]")
        return number

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self.raw(name, str(default))
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name}={value!r}; rule: a number in [{low}, {high}]") from None
        if not low <= number <= high:
            raise ConfigError(f"{PREFIX}{name}={number}; rule: a number in [{low}, {high}]")
        return number

    def endpoints(self, name: str, default_port: int, default: str | None = None) -> tuple[Endpoint, ...]:
        value = self.raw(name, default)
        out: list[Endpoint] = []
        for part in (p.strip() for p in value.split(",")):
            match = _HOSTPORT.match(part)
            port = int(match["port"] or default_port) if match else 0
            if not 1 <= port <= 65535:
                raise ConfigError(
                    f"{PREFIX}{name}={value!r}: {part!r} is not host[:port]; rule: a comma-separated "
                    f"list of host[:port] (port 1-65535, default {default_port})"
                )
            out.append(Endpoint(match["host"], port))
        if len(set(out)) != len(out):
            raise ConfigError(f"{PREFIX}{name}={value!r}; rule: every endpoint once")
        return tuple(out)

    def breaker(self, name: str) -> BreakerSettings:
        return BreakerSettings(
            failure_threshold=self.integer(f"{name}_BREAKER_FAILURES", 5, 1, 1000),
            recovery_s=self.number(f"{name}_BREAKER_RECOVERY_S", 10.0, 0.1, 3600),
            success_threshold=self.integer(f"{name}_BREAKER_SUCCESSES", 2, 1, 1000),
        )


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines (blank lines and ``#`` comments allowed, no quoting)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"{PREFIX}ENV_FILE={path}: cannot read the file ({exc.strerror})") from exc
    out: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not re.match(r"^[A-Z][A-Z0-9_]*$", name):
            raise ConfigError(f"{PREFIX}ENV_FILE={path}, line {number}: not NAME=value; rule: one NAME=value per line")
        out[name] = value
    return out


def load_config(environ: Mapping[str, str]) -> Config:
    """Read and check every variable; raise ConfigError on the first bad one."""
    if environ.get(PREFIX + "ENV_FILE"):
        environ = {**read_env_file(Path(environ[PREFIX + "ENV_FILE"])), **environ}
    r = _Reader(environ)
    ready_timeout = r.number("READY_CHECK_TIMEOUT_S", 1.0, 0.05, 30)
    db_timeout = r.number("DB_TIMEOUT_S", 3.0, 0.1, 60)
    config = Config(
        instance=r.text("INSTANCE", "app", _INSTANCE),
        listen_host=r.text("LISTEN_HOST", "127.0.0.1"),
        listen_port=r.integer("LISTEN_PORT", 8080, 1, 65535),
        # how long an idle client connection stays open: longer than the load
        # balancer keeps its idle connections to the instance, so that the
        # balancer, not the app, closes them (docs/drills.md, keep-alive)
        keepalive_s=r.integer("KEEPALIVE_S", 75, 1, 3600),
        max_body_bytes=r.integer("MAX_BODY_BYTES", 64 * 1024, 1024, 16 * 1024 * 1024),
        db_hosts=r.endpoints("DB_HOSTS", 5432),
        db_name=r.text("DB_NAME", "hastack_app", _NAME),
        db_user=r.text("DB_USER", "hastack_app", _NAME),
        db_password=r.secret("DB_PASSWORD"),
        db_connect_timeout_s=r.integer("DB_CONNECT_TIMEOUT_S", 2, 2, 60),
        db_timeout_s=db_timeout,
        db_pool_min=r.integer("DB_POOL_MIN", 2, 0, 100),
        db_pool_max=r.integer("DB_POOL_MAX", 10, 1, 100),
        # Degraded reads: while no primary answers, reads that miss the cache
        # go to a standby through a pool of their own (0 turns them off).
        # The members by default; on Kubernetes the Service of the replicas.
        db_read_hosts=r.endpoints("DB_READ_HOSTS", 5432, environ.get(PREFIX + "DB_HOSTS")),
        db_read_pool_max=r.integer("DB_READ_POOL_MAX", 4, 0, 100),
        # a standby further behind than this (replay behind receive) is not read
        db_read_max_lag_s=r.number("DB_READ_MAX_LAG_S", 30.0, 0, 86400),
        redis_sentinels=r.endpoints("REDIS_SENTINELS", 26379),
        redis_master_name=r.text("REDIS_MASTER_NAME", "hastack", re.compile(r"^[A-Za-z0-9._-]+$")),
        redis_password=r.secret("REDIS_PASSWORD"),
        redis_sentinel_password=r.secret("REDIS_SENTINEL_PASSWORD"),
        redis_timeout_s=r.number("REDIS_TIMEOUT_S", 0.5, 0.01, 30),
        # connections per Redis pool for requests: one per request in flight
        # at most, so HAProxy's maxconn per instance (app_backend_max_concurrency)
        redis_pool_max=r.integer("REDIS_POOL_MAX", 200, 1, 10000),
        cache_ttl_s=r.integer("CACHE_TTL_S", 3600, 1, 30 * 86400),
        local_cache_ttl_s=r.number("LOCAL_CACHE_TTL_S", 30.0, 0, 3600),
        local_cache_size=r.integer("LOCAL_CACHE_SIZE", 10000, 0, 10_000_000),
        storage_path=Path(r.text("STORAGE_PATH")),
        ready_check_timeout_s=ready_timeout,
        ready_cache_s=r.number("READY_CACHE_S", 1.0, 0, 60),
        db_breaker=r.breaker("DB"),
        cache_breaker=r.breaker("CACHE"),
        log_level=r.text("LOG_LEVEL", "INFO", re.compile(r"^(DEBUG|INFO|WARNING|ERROR)$")),
    )
    if config.db_pool_min > config.db_pool_max:
        raise ConfigError(
            f"{PREFIX}DB_POOL_MIN={config.db_pool_min} > {PREFIX}DB_POOL_MAX={config.db_pool_max}; rule: min <= max"
        )
    if not config.storage_path.is_absolute():
        raise ConfigError(f"{PREFIX}STORAGE_PATH={config.storage_path}; rule: an absolute path")
    return config

"""Real services for the app tests, on 127.78.x.x (never a lab's block).

- PostgreSQL 15: the drill tests' throw-away ``PgServer`` (tests/unit/drill/
  conftest.py, loaded by path so there is one copy of it) on 127.78.0.1, with
  the app's own role and database.
- Redis master + replica + Sentinel: ``redis_drill_lab`` (fixtures/redis) on
  127.78.1.1-3.
- The app itself: real ``python -m hastack_app`` processes on 127.78.2.x,
  configured through the environment exactly as the role configures them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "unit" / "fixtures" / "redis"))
sys.path.insert(0, str(ROOT / "app"))
from redis_drill_lab import RedisDrillLab, redis_drill_lab  # noqa: E402

_spec = importlib.util.spec_from_file_location("hastack_unit_pg", ROOT / "tests" / "unit" / "drill" / "conftest.py")
assert _spec and _spec.loader
_pg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_pg)
PgServer = _pg.PgServer
throwaway_standby = _pg.throwaway_standby

PG_HOST = "127.78.0.1"
PG_DEAD_HOST = "127.78.0.9"  # first in DB_HOSTS: nothing listens, libpq moves on
REDIS_HOSTS = ("127.78.1.1", "127.78.1.2", "127.78.1.3")
APP_HOST = "127.78.2.1"
APP_DB_USER = "hastack_app"
APP_DB_NAME = "hastack_app"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def dead_endpoint() -> str:
    """host:port where nothing listens (a member whose node is gone): refused at once."""
    host = "127.78.1.9"
    return f"{host}:{free_port(host)}"


@pytest.fixture(scope="session")
def app_pg() -> Iterator[Any]:
    """PostgreSQL with the app's role and database, migrated as the role does
    (``python -m hastack_app migrate``, with the app's own settings)."""
    with _pg.throwaway_pg("hastack-unit-app-pg-", PG_HOST) as server:
        server.app_password = secrets.token_urlsafe(18)
        server.sql(f"CREATE ROLE {APP_DB_USER} LOGIN PASSWORD '{server.app_password}'")
        server.sql(f"CREATE DATABASE {APP_DB_NAME} OWNER {APP_DB_USER}")
        migrate = run_migrate(server)
        assert migrate.returncode == 0, migrate.stderr
        yield server


def run_migrate(server: Any, **overrides: str) -> subprocess.CompletedProcess[str]:
    """``python -m hastack_app migrate`` against ``server`` as the app's user."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HASTACK_APP_DB_HOSTS": f"{server.host}:{server.port}",
        "HASTACK_APP_DB_PASSWORD": server.app_password,
        "HASTACK_APP_REDIS_SENTINELS": "127.78.1.9:26379",
        "HASTACK_APP_REDIS_PASSWORD": "x" * 16,
        "HASTACK_APP_REDIS_SENTINEL_PASSWORD": "x" * 16,
        "HASTACK_APP_STORAGE_PATH": "/tmp",
        **{f"HASTACK_APP_{k}": v for k, v in overrides.items()},
    }
    return subprocess.run(
        [sys.executable, "-m", "hastack_app", "migrate"],
        env=env, cwd=ROOT / "app", capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def pg(app_pg: Any) -> Iterator[Any]:
    """The session server, running before and after the test."""
    if not app_pg.running():
        app_pg.start()
    yield app_pg
    if not app_pg.running():
        app_pg.start()


@pytest.fixture
def redis_lab() -> Iterator[RedisDrillLab]:
    """A fresh master + replica + sentinel per test (tests kill and stop them)."""
    with redis_drill_lab(down_after_ms=1000, hosts=REDIS_HOSTS) as lab:
        yield lab


class AppProcess:
    """One ``python -m hastack_app`` with the environment the role writes."""

    def __init__(self, env: dict[str, str], base: Path, name: str) -> None:
        self.env = env
        self.name = name
        self.port = int(env["HASTACK_APP_LISTEN_PORT"])
        self.url = f"http://{APP_HOST}:{self.port}"
        self.logfile = base / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def start(self, wait_ready: bool = True) -> AppProcess:
        log = open(self.logfile, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hastack_app"], env=self.env, cwd=ROOT / "app", stdout=log, stderr=subprocess.STDOUT
        )
        self.wait(lambda: self.get("/health").status_code == 200, 20, "/health 200")
        if wait_ready:
            self.wait(lambda: self.get("/ready").status_code == 200, 20, "/ready 200")
        return self

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"app {self.name} exited ({self.proc.returncode}): {self.log()}")
            with contextlib.suppress(httpx.TransportError):
                if condition():
                    return
            time.sleep(0.1)
        raise AssertionError(f"app {self.name}: no {what} within {timeout} s; log: {self.log()}")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for line in self.get("/metrics").text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, rest = head.partition("{")
            if metric != name:
                continue
            found = dict(
                (kv.split("=", 1)[0], json.loads(kv.split("=", 1)[1])) for kv in rest.rstrip("}").split(",") if kv
            )
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(value)
        return total

    def stop(self) -> None:
        self.client.close()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")[-3000:] if self.logfile.exists() else ""


@pytest.fixture
def make_app(pg: Any, redis_lab: RedisDrillLab) -> Iterator[Callable[..., AppProcess]]:
    """Start app instances against ``pg`` and ``redis_lab``; keyword arguments
    override HASTACK_APP_* variables (without the prefix)."""
    base = Path(tempfile.mkdtemp(prefix="hastack-unit-app-", dir="/tmp"))
    apps: list[AppProcess] = []

    def make(name: str = "a", start: bool = True, **overrides: str) -> AppProcess:
        storage = base / f"storage-{name}"
        storage.mkdir(exist_ok=True)
        host, port = redis_lab.address("sentinel")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HASTACK_APP_INSTANCE": name,
            "HASTACK_APP_LISTEN_HOST": APP_HOST,
            "HASTACK_APP_LISTEN_PORT": str(free_port(APP_HOST)),
            "HASTACK_APP_DB_HOSTS": f"{PG_DEAD_HOST}:{pg.port},{pg.host}:{pg.port}",
            "HASTACK_APP_DB_NAME": APP_DB_NAME,
            "HASTACK_APP_DB_USER": APP_DB_USER,
            "HASTACK_APP_DB_PASSWORD": pg.app_password,
            "HASTACK_APP_DB_TIMEOUT_S": "2",
            "HASTACK_APP_REDIS_SENTINELS": f"{host}:{port}",
            "HASTACK_APP_REDIS_MASTER_NAME": redis_lab.master_name,
            "HASTACK_APP_REDIS_PASSWORD": redis_lab.password,
            "HASTACK_APP_REDIS_SENTINEL_PASSWORD": redis_lab.sentinel_password,
            "HASTACK_APP_STORAGE_PATH": str(storage),
            "HASTACK_APP_READY_CACHE_S": "0",
            "HASTACK_APP_READY_CHECK_TIMEOUT_S": "1",
        }
        env.update({f"HASTACK_APP_{k}": str(v) for k, v in overrides.items()})
        app = AppProcess(env, base, name)
        apps.append(app)
        return app.start() if start else app

    try:
        yield make
    finally:
        for app in apps:
            app.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def app_config(pg: Any, tmp_path: Path) -> Callable[..., Any]:
    """In-process settings: PostgreSQL is the session's server unless DB_HOSTS
    says otherwise; Redis is a dead address unless REDIS_SENTINELS (and the
    passwords) say otherwise. Keyword arguments are HASTACK_APP_* without the prefix."""
    from hastack_app.config import load_config

    def make(**overrides: str) -> Any:
        env = {
            "DB_HOSTS": f"{pg.host}:{pg.port}", "DB_PASSWORD": pg.app_password,
            "REDIS_SENTINELS": "127.78.1.9:26379", "REDIS_PASSWORD": "x" * 16,
            "REDIS_SENTINEL_PASSWORD": "x" * 16, "STORAGE_PATH": str(tmp_path), **overrides,
        }  # fmt: skip
        return load_config({f"HASTACK_APP_{k}": v for k, v in env.items()})

    return make

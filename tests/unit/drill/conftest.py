"""A private PostgreSQL 15 for the writer/sampler tests.

It listens only on 127.77.0.1 (never on the lab's 127.42.0.x; a standby made
for the split-brain test gets 127.77.0.2) with a port of its own and a unix
socket directory of its own, requires scram-sha-256 on TCP, and is stopped at
teardown. The directory is a fresh ``mkdtemp`` under /tmp rather than pytest's
``tmp_path``: pytest's base directory is 0700 root, which the ``postgres`` user
cannot traverse.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_HOST = "127.77.0.1"
PG_STANDBY_HOST = "127.77.0.2"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PgServer:
    """One throw-away PostgreSQL cluster, driven through pg_ctl as ``postgres``."""

    def __init__(self, base: Path, port: int, host: str = PG_HOST) -> None:
        self.base = base
        self.data = base / "data"
        self.sockdir = base / "sock"
        self.logfile = base / "postgres.log"
        self.port = port
        self.host = host
        self.password = secrets.token_urlsafe(18)

    # -- lifecycle ---------------------------------------------------------
    def _as_postgres(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def init(self) -> None:
        pw = pwd.getpwnam("postgres")
        self.sockdir.mkdir()
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        for p in (self.base, self.sockdir, pwfile):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(pwfile, 0o600)
        self._as_postgres(
            str(PG_BIN / "initdb"),
            "-D", str(self.data),
            "-U", "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
            "--no-instructions",
        )  # fmt: skip
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '{self.host}'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.sockdir}'\n"
                "fsync = off\n"
                "shared_buffers = 16MB\n"
                "max_connections = 30\n"
                "log_line_prefix = '%m [%p] %a '\n"
            )

    def init_replica_of(self, primary: PgServer) -> None:
        """A streaming standby of ``primary`` (pg_basebackup -R over its unix socket)."""
        pw = pwd.getpwnam("postgres")
        self.sockdir.mkdir()
        for p in (self.base, self.sockdir):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        self._as_postgres(
            str(PG_BIN / "pg_basebackup"),
            "-D", str(self.data),
            "-h", str(primary.sockdir), "-p", str(primary.port), "-U", "postgres",
            "-R", "-X", "stream", "-c", "fast", "--no-sync",
        )  # fmt: skip
        with open(self.data / "postgresql.conf", "a") as conf:  # later lines win
            conf.write(
                f"listen_addresses = '{self.host}'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.sockdir}'\n"
            )
        self.password = primary.password

    def promote(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "promote")

    def start(self) -> None:
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile),
            "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop"
        )

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        """Stop it (immediate) if it runs and remove its directory; never raises."""
        if self.running():
            with contextlib.suppress(subprocess.SubprocessError):
                self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    # -- access ------------------------------------------------------------
    def conninfo(self, **extra: str | int) -> str:
        """TCP conninfo without the password (tests pass it apart, like the modules)."""
        import psycopg

        params: dict[str, str | int] = {
            "host": self.host,
            "port": self.port,
            "dbname": "postgres",
            "user": "postgres",
            "connect_timeout": 2,
        }
        params.update(extra)
        return psycopg.conninfo.make_conninfo(**params)

    def admin(self, autocommit: bool = True):
        """A superuser connection over the unix socket (trust)."""
        import psycopg

        return psycopg.connect(
            host=str(self.sockdir), port=self.port, dbname="postgres", user="postgres",
            autocommit=autocommit, connect_timeout=5,
        )  # fmt: skip

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        with self.admin() as conn:
            cur = conn.execute(query, params or None)
            return cur.fetchall() if cur.description else []

    def set_config(self, name: str, value: str) -> None:
        """ALTER SYSTEM + reload, then wait until a new session sees it."""
        self.sql(f"ALTER SYSTEM SET {name} = '{value}'")
        self.sql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.sql(f"SHOW {name}")[0][0] == value:
                return
            time.sleep(0.05)
        raise AssertionError(f"{name} did not become {value!r} after reload")

    def log_text(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""


@contextlib.contextmanager
def throwaway_pg(prefix: str, host: str = PG_HOST) -> Iterator[PgServer]:
    """A started PgServer on ``host`` (a free port, a fresh 0755 directory under /tmp
    named ``prefix``...), destroyed on exit; skips the test without PostgreSQL 15."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 is not installed ({PG_BIN / 'initdb'} missing)")
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(base, 0o755)
    server = PgServer(base, _free_port(host), host=host)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    with throwaway_pg("hastack-drill-pg-") as server:
        yield server


@contextlib.contextmanager
def throwaway_standby(primary: PgServer, prefix: str, host: str) -> Iterator[PgServer]:
    """A started streaming standby of ``primary`` on ``host`` (a free port, a
    fresh 0755 directory under /tmp named ``prefix``...), destroyed on exit."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(base, 0o755)
    standby = PgServer(base, _free_port(host), host=host)
    try:
        standby.init_replica_of(primary)
        standby.start()
        yield standby
    finally:
        standby.destroy()


@pytest.fixture
def pg_standby(pg: PgServer) -> Iterator[PgServer]:
    """A streaming standby of ``pg`` on 127.77.0.2 (its own address, so
    ``inet_server_addr()`` tells the two apart), removed at teardown."""
    with throwaway_standby(pg, "hastack-drill-pg-standby-", PG_STANDBY_HOST) as standby:
        yield standby


@pytest.fixture
def pg(pg_server: PgServer) -> Iterator[PgServer]:
    """The session server, running, with settings a test changed put back."""
    if not pg_server.running():
        pg_server.start()
    yield pg_server
    if not pg_server.running():
        pg_server.start()
    pg_server.sql("ALTER SYSTEM RESET ALL")
    pg_server.sql("SELECT pg_reload_conf()")


# -- synthetic recordings (analysis and report tests) ------------------------
MEMBERS = [
    {"name": "node-a", "host": "127.42.0.11", "port": 5432},
    {"name": "node-b", "host": "127.42.0.12", "port": 5432},
    {"name": "node-c", "host": "127.42.0.13", "port": 5432},
]
ADDR = {m["name"]: m["host"] for m in MEMBERS}


class Timeline:
    """Build a recorder-shaped raw dict piece by piece (times in seconds)."""

    def __init__(self) -> None:
        self.attempts: list[dict] = []
        self.samples: dict[str, list[dict]] = {m["name"]: [] for m in MEMBERS}
        self.events: list[dict] = []
        self._id = 0

    def writes(
        self,
        t0: float,
        t1: float,
        outcome: str = "ack",
        member: str | None = "node-a",
        timeline: int | None = 1,
        step: float = 0.02,
        latency: float = 0.002,
        error: str | None = None,
    ) -> list[int]:
        ids = []
        t = t0
        while t < t1 - 1e-9:
            self._id += 1
            ack = outcome == "ack"
            self.attempts.append(
                {
                    "id": self._id,
                    "t_start": round(t, 6),
                    "t_end": round(t + latency, 6),
                    "outcome": outcome,
                    "server": ADDR[member] if ack and member else None,
                    "timeline": timeline if ack else None,
                    "error": None if ack else (error or f"{outcome} at {t:.2f}"),
                    "phase": "query",
                }
            )
            ids.append(self._id)
            t += step
        return ids

    def lane(self, member: str, t0: float, t1: float, state: str, timeline: int | None = 1):
        t = t0
        while t < t1 - 1e-9:
            self.samples[member].append(
                {
                    "t_start": round(t, 6),
                    "t_end": round(t + 0.003, 6),
                    "state": state,
                    "timeline": timeline if state != "unknown" else None,
                    "error": None,
                }
            )
            t += 0.2

    def event(self, t: float, event: str, target: str | None = None, **extra) -> None:
        self.events.append({"t": t, "t_wall": 1_700_000_000.0 + t, "event": event,
                            "target": target, **extra})  # fmt: skip

    def acked_ids(self) -> list[int]:
        return [a["id"] for a in self.attempts if a["outcome"] == "ack"]

    def raw(self, present: list[int] | None = None, readback_ok: bool = True) -> dict:
        t_stop = max((a["t_end"] for a in self.attempts), default=0.0) + 0.02
        ids = sorted(self.acked_ids() if present is None else present)
        return {
            "format": "hastack.drill.raw/1",
            "run_id": "synthetic",
            "started_at": "2025-01-02T03:04:05.000+00:00",
            "anchor": {"mono": 1000.0, "wall": 1_700_000_000.0},
            "config": {"members": MEMBERS, "interval_ms": 20, "sample_interval_ms": 200},
            "writer": {
                "t_start": 0.0,
                "t_stop": t_stop,
                "fatal": None,
                "stuck": False,
                "attempts": self.attempts,
            },
            "samples": {m: rows for m, rows in self.samples.items() if rows},
            "sampler": {"fatal": {}, "stuck": []},
            "events": self.events,
            "stop": {"reason": "stop_file", "t": t_stop},
            "readback": {
                "ok": readback_ok,
                "server": ADDR["node-b"] if readback_ok else None,
                "ids": ids if readback_ok else [],
                "attempts": 1,
                "error": None if readback_ok else "no primary answered within 30 s",
                "t": t_stop + 0.1,
            },
        }


def failover_timeline() -> Timeline:
    """A clean leader kill: node-a leads, is killed at 5 s, node-b leads from 8 s."""
    tl = Timeline()
    tl.writes(0, 5, member="node-a", timeline=1)
    tl.writes(5, 8, outcome="error", error="connection refused")
    tl.writes(8, 10, member="node-b", timeline=2)
    tl.lane("node-a", 0, 5, "primary", 1)
    tl.lane("node-a", 5, 9, "unknown")
    tl.lane("node-a", 9, 10, "replica", 2)
    tl.lane("node-b", 0, 7.9, "replica", 1)
    tl.lane("node-b", 7.9, 10, "primary", 2)
    tl.lane("node-c", 0, 10, "replica", 1)
    tl.event(4.9, "disrupt_start", "node-a", kind="kill")
    tl.event(5.0, "disrupt_end", "node-a", kind="kill")
    tl.event(9.5, "cluster_healthy")
    return tl


@pytest.fixture
def timeline() -> Timeline:
    return Timeline()


@pytest.fixture
def failover() -> Timeline:
    return failover_timeline()

"""A failed or cancelled connect closes its socket at once, without GC.

The "mute" server here accepts TCP connections and never answers, so a
connect to it waits after its startup packet until it times out or is
cancelled. psycopg 3.3's own AsyncConnection then keeps the attempt open
until Python's cyclic garbage collector runs (a reference cycle through a
failed attempt's traceback); the app's Connection must close it when the
error is raised. Seen on the lab: sockets of such connects finished their
handshake when a partition healed, and the demoting primary's shutdown
waited 60 s for them (see hastack_app.db.Connection).
"""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "app"))
from hastack_app.db import Connection

ADDR = "127.78.3.1"


@pytest.fixture
def mute_port() -> Iterator[tuple[socket.socket, int]]:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ADDR, 0))
    srv.listen(16)
    srv.settimeout(5)
    yield srv, srv.getsockname()[1]
    srv.close()


@pytest.fixture
def refused_port() -> int:
    """A port nothing listens on: that attempt fails at once."""
    with socket.socket() as s:
        s.bind((ADDR, 0))
        return s.getsockname()[1]


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    yield
    gc.enable()
    gc.collect()


def peer_state(srv: socket.socket) -> bytes | None:
    """What the mute server's side sees after the client gave up: b"" when the
    client closed its socket, None while it is still open."""
    conn, _ = srv.accept()
    with conn:
        conn.settimeout(1)
        assert conn.recv(4096), "the client sent no startup packet"
        try:
            return conn.recv(4096)
        except TimeoutError:
            return None


def timed_out(cls: type[psycopg.AsyncConnection], port: int) -> str:
    async def attempt() -> str:
        try:
            await cls.connect(f"host={ADDR} port={port} user=app dbname=app connect_timeout=1")
        except psycopg.OperationalError as ex:
            return type(ex).__name__
        return "connected"

    return asyncio.run(attempt())


def cancelled(cls: type[psycopg.AsyncConnection], refused: int, port: int, extra: str = "") -> str:
    """Multi-host: the first host refuses, the probe gives up on the second."""

    async def attempt() -> str:
        ci = f"host={ADDR},{ADDR} port={refused},{port} user=app dbname=app connect_timeout=10 {extra}"
        try:
            await asyncio.wait_for(cls.connect(ci), 1.0)
        except TimeoutError as ex:
            return type(ex).__name__
        return "connected"

    return asyncio.run(attempt())


@pytest.mark.usefixtures("no_gc")
def test_timed_out_connect_closes_its_socket(mute_port: tuple[socket.socket, int]) -> None:
    srv, port = mute_port
    assert timed_out(Connection, port) == "ConnectionTimeout"
    assert peer_state(srv) == b""


@pytest.mark.usefixtures("no_gc")
def test_cancelled_connect_closes_its_socket(mute_port: tuple[socket.socket, int], refused_port: int) -> None:
    srv, port = mute_port
    assert cancelled(Connection, refused_port, port) == "TimeoutError"
    assert peer_state(srv) == b""


@pytest.mark.usefixtures("no_gc")
def test_a_cancelled_race_of_hosts_closes_every_socket(mute_port: tuple[socket.socket, int], refused_port: int) -> None:
    """A read-write connect tries the hosts at once: cancelled, every attempt goes."""
    srv, port = mute_port
    assert cancelled(Connection, refused_port, port, "target_session_attrs=read-write") == "TimeoutError"
    assert peer_state(srv) == b""


@pytest.mark.usefixtures("no_gc")
def test_psycopg_alone_keeps_them_open_until_gc(mute_port: tuple[socket.socket, int], refused_port: int) -> None:
    """The control, proving the two tests above can fail. When a psycopg
    release breaks the cycle itself this fails, and Connection can go."""
    srv, port = mute_port
    assert timed_out(psycopg.AsyncConnection, port) == "ConnectionTimeout"
    assert peer_state(srv) is None
    assert cancelled(psycopg.AsyncConnection, refused_port, port) == "TimeoutError"
    assert peer_state(srv) is None


@pytest.mark.parametrize("cls", [Connection, psycopg.AsyncConnection], ids=["app", "plain-psycopg"])
def test_a_black_holed_host_costs_no_connect_timeout(mute_port, pg, cls) -> None:
    """The first host black-holed (its zone cut off: the mute server accepts and
    never answers), the second a primary. Plain psycopg pays connect_timeout
    (2 s) on the first host every time; the app's Connection tries the other
    hosts after a head start of 0.25 s, and then the last primary first."""
    _srv, port = mute_port
    conninfo = psycopg.conninfo.make_conninfo(
        host=f"{ADDR},{pg.host}", port=f"{port},{pg.port}", dbname="hastack_app", user="hastack_app",
        password=pg.app_password, target_session_attrs="read-write", connect_timeout=2,
    )  # fmt: skip

    async def timed() -> tuple[float, str]:
        start = asyncio.get_running_loop().time()
        conn = await cls.connect(conninfo)
        try:
            return asyncio.get_running_loop().time() - start, conn.info.host
        finally:
            await conn.close()

    first, host1 = asyncio.run(timed())
    second, host2 = asyncio.run(timed())

    assert host1 == host2 == pg.host
    if cls is Connection:
        assert first < 1.0 and second < 0.2, (first, second)
    else:
        assert first >= 1.9 and second >= 1.9, second  # what the app avoids (and a sign psycopg changed, if this fails)


def test_the_readiness_probe_finds_the_primary_past_a_black_holed_first_host(mute_port, pg) -> None:
    """The probe alone (no pool traffic: HAProxy holds a not-ready instance
    down) with its 1 s budget and a first host that never answers: the first
    probes fail, the background search finds the primary, later probes pass."""
    from hastack_app.breaker import CircuitBreaker
    from hastack_app.config import BreakerSettings, load_config
    from hastack_app.db import Database

    _srv, port = mute_port
    config = load_config({
        "HASTACK_APP_DB_HOSTS": f"{ADDR}:{port},{pg.host}:{pg.port}", "HASTACK_APP_DB_PASSWORD": pg.app_password,
        "HASTACK_APP_REDIS_SENTINELS": "127.78.1.1:26379", "HASTACK_APP_REDIS_PASSWORD": "x" * 16,
        "HASTACK_APP_REDIS_SENTINEL_PASSWORD": "x" * 16, "HASTACK_APP_STORAGE_PATH": "/tmp",
    })  # fmt: skip
    Connection.last_primary.clear()

    async def probes() -> list[bool]:
        db = Database(config, CircuitBreaker("database", BreakerSettings(5, 5.0, 2)))
        out = []
        for _ in range(6):
            try:  # as /ready calls it: its own timeout around the probe's, the same 1 s
                out.append((await asyncio.wait_for(db.ping(1.0), 1.0)).split("/")[0] == pg.host)
            except (TimeoutError, psycopg.OperationalError):
                out.append(False)
            await asyncio.sleep(0.5)
        return out

    results = asyncio.run(probes())
    assert all(results), results  # past the black hole within the budget, from the first probe on


def test_no_host_answering_names_every_host(refused_port: int) -> None:
    ci = f"host={ADDR},127.78.3.2 port={refused_port} user=app dbname=app target_session_attrs=read-write"

    async def attempt() -> str:
        try:
            await Connection.connect(ci)
        except psycopg.OperationalError as ex:
            return str(ex)
        return "connected"

    message = asyncio.run(attempt())
    assert message.startswith("no host gave a read-write session") and ADDR in message and "127.78.3.2" in message

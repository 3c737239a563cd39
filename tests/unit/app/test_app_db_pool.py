"""The app's PostgreSQL pool in an outage and under load, in-process.

PostgreSQL is the session's server behind ``Gate``, a TCP front the test opens
and closes: closed, it accepts and hangs up at once (a primary that is gone);
open, it forwards to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from hastack_app import db as app_db
from hastack_app.breaker import CircuitBreaker
from hastack_app.config import BreakerSettings, Config, load_config

GATE_HOST = "127.78.3.2"


class Gate:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.open = False
        self.attempts: list[float] = []
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, GATE_HOST, 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server:
            self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.attempts.append(time.monotonic())
        if not self.open:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()


def gate_config(pg: Any, port: int, **extra: str) -> Config:
    return load_config({
        "HASTACK_APP_DB_HOSTS": f"{GATE_HOST}:{port}", "HASTACK_APP_DB_PASSWORD": pg.app_password,
        "HASTACK_APP_REDIS_SENTINELS": "127.78.1.1:26379", "HASTACK_APP_REDIS_PASSWORD": "x" * 16,
        "HASTACK_APP_REDIS_SENTINEL_PASSWORD": "x" * 16, "HASTACK_APP_STORAGE_PATH": "/tmp",
        **{f"HASTACK_APP_{k}": v for k, v in extra.items()},
    })  # fmt: skip


def breaker() -> CircuitBreaker:
    return CircuitBreaker("database", BreakerSettings(5, 60.0, 2), failure_types=app_db.DB_FAILURES)


def test_the_pool_keeps_reconnecting_through_an_outage(pg, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool opens while PostgreSQL is gone and nobody sends a request. Its
    connection slots must keep trying past psycopg_pool's reconnect_timeout
    (shortened here) and fill the pool to DB_POOL_MIN once PostgreSQL is back.
    With reconnect_timeout=0 each slot tried twice, was dropped, and the pool
    stayed empty until requests came (and waited for it)."""
    monkeypatch.setattr(app_db, "RECONNECT_TIMEOUT_S", 1.0, raising=False)

    async def scenario() -> tuple[int, int, dict[str, int]]:
        gate = Gate((pg.host, pg.port))
        port = await gate.start()
        database = app_db.Database(gate_config(pg, port, DB_POOL_MIN="2"), breaker())
        try:
            await database.open()
            await asyncio.sleep(3.5)  # more than three reconnect timeouts
            late = sum(1 for t in gate.attempts if t > time.monotonic() - 1.5)
            total = len(gate.attempts)
            gate.open = True
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline and database.pool.get_stats()["pool_available"] < 2:
                await asyncio.sleep(0.1)
            return late, total, database.pool.get_stats()
        finally:
            await database.close()
            await gate.stop()

    late, total, stats = asyncio.run(scenario())
    assert late >= 1, "no connection attempt in the last 1.5 s of the outage: the pool gave up"
    assert total <= 20, f"{total} connection attempts in 3.5 s: retrying without backoff"
    assert stats["pool_available"] >= 2, stats

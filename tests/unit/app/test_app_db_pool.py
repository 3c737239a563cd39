"""The app's PostgreSQL pool in an outage and under load, in-process.

PostgreSQL is the session's server behind ``Gate``, a TCP front the test opens
and closes: closed, it accepts and hangs up at once (a primary that is gone);
open, it forwards to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from hastack_app import db as app_db
from hastack_app.breaker import CircuitBreaker
from hastack_app.config import BreakerSettings

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


def breaker() -> CircuitBreaker:
    return CircuitBreaker("database", BreakerSettings(5, 60.0, 2), failure_types=app_db.DB_FAILURES)


def test_the_pool_keeps_reconnecting_through_an_outage(pg, app_config, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool opens while PostgreSQL is gone and nobody sends a request. Its
    connection slots must keep trying past psycopg_pool's reconnect_timeout
    (shortened here) and fill the pool to DB_POOL_MIN once PostgreSQL is back.
    With reconnect_timeout=0 each slot tried twice, was dropped, and the pool
    stayed empty until requests came (and waited for it)."""
    monkeypatch.setattr(app_db, "RECONNECT_TIMEOUT_S", 1.0, raising=False)

    async def scenario() -> tuple[int, int, dict[str, int]]:
        gate = Gate((pg.host, pg.port))
        port = await gate.start()
        database = app_db.Database(app_config(DB_HOSTS=f"{GATE_HOST}:{port}", DB_POOL_MIN="2"), breaker())
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


async def failures_while_held(database: app_db.Database, calls: int) -> list[BaseException]:
    """``calls`` requests while another holds the only connection (DB_POOL_MAX=1)."""
    out: list[BaseException] = []
    async with database._connection():
        for _ in range(calls):
            try:
                await database.list(10, 0)
            except Exception as exc:
                out.append(exc)
    return out


def test_a_full_pool_is_back_pressure_not_an_outage(app_config) -> None:
    """Every connection busy with other requests (load alone): more requests
    than the breaker's threshold time out waiting for one. They are Saturated
    (429 in the API) and the breaker stays closed; it used to open (PoolTimeout
    was a failure) and turn load into a minute of 503s."""

    async def scenario() -> tuple[list[BaseException], str]:
        config = app_config(DB_POOL_MIN="1", DB_POOL_MAX="1", DB_TIMEOUT_S="0.3")
        database = app_db.Database(config, breaker())
        try:
            await database.open()
            await database.list(1, 0)  # connected
            errors = await failures_while_held(database, 6)
            return errors, database.breaker.state.name
        finally:
            await database.close()

    errors, state = asyncio.run(scenario())
    assert [type(e).__name__ for e in errors] == ["Saturated"] * 6, errors
    assert "HASTACK_APP_DB_POOL_MAX" in str(errors[0])
    assert state == "CLOSED"


def test_a_pool_that_cannot_connect_still_opens_the_breaker(pg, app_config) -> None:
    """The control: PostgreSQL gone, the pool has no connection to give. The
    same wait timing out is a failure, and the breaker opens."""

    async def scenario() -> tuple[list[str], str]:
        gate = Gate((pg.host, pg.port))
        port = await gate.start()
        database = app_db.Database(
            app_config(DB_HOSTS=f"{GATE_HOST}:{port}", DB_POOL_MIN="1", DB_POOL_MAX="1", DB_TIMEOUT_S="0.3"), breaker()
        )
        names = []
        try:
            await database.open()
            for _ in range(6):
                try:
                    await database.list(10, 0)
                except Exception as exc:
                    names.append(type(exc).__name__)
            return names, database.breaker.state.name
        finally:
            await database.close()
            await gate.stop()

    names, state = asyncio.run(scenario())
    assert "Saturated" not in names and len(names) == 6, names
    assert names[-1] == "CircuitOpenError" and state == "OPEN", names


def test_the_api_answers_429_with_retry_after_while_the_pool_is_full(app_config) -> None:
    """The same saturation through the API: 429 and Retry-After, not a 503 (a
    5xx counts against the SLO), and the database breaker stays closed."""
    import httpx
    from hastack_app.main import create_app

    async def scenario() -> tuple[int, int, str | None, str]:
        app = create_app(app_config(DB_POOL_MIN="1", DB_POOL_MAX="1", DB_TIMEOUT_S="0.3"))
        services = app.state.services
        await services.db.open()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                before = (await client.get("/items")).status_code
                async with services.db._connection():
                    answers = [await client.get("/items") for _ in range(6)]
            return (
                before,
                answers[-1].status_code,
                answers[-1].headers.get("Retry-After"),
                services.db_breaker.state.name,
            )
        finally:
            await services.close()

    before, status, retry_after, state = asyncio.run(scenario())
    assert (before, status, retry_after, state) == (200, 429, "1", "CLOSED")

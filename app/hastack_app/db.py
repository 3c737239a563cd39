"""Items in PostgreSQL: psycopg 3 async pool over libpq multi-host conninfo.

``target_session_attrs=read-write`` makes every new connection find the
current primary among the Patroni members; the pool checks a connection before
handing it out, so connections to a dead or demoted primary are dropped
instead of failing a request. Every call runs under the database breaker and
an overall timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .breaker import CircuitBreaker, Saturated
from .config import Config

log = logging.getLogger("hastack_app.db")

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    data       jsonb NOT NULL DEFAULT '{}'::jsonb,
    version    integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""

# How long psycopg_pool retries one connection slot (backoff 1, 2, 4 s, then
# capped here) before it gives up and drops the slot; Database then starts a
# fresh attempt (_reconnect_failed), so the pool keeps trying for as long as
# PostgreSQL is gone, never more than about 4 s apart. Not 0: in psycopg_pool
# 3.x that gives up after a second attempt at once, and the pool shrank to
# what requests grew it back to.
RECONNECT_TIMEOUT_S = 10.0

# What says "the database is unavailable" (and trips the breaker), as
# opposed to an answer the database gave (a constraint, a missing row).
# psycopg_pool's PoolTimeout is an OperationalError: a wait for a pooled
# connection that timed out while every connection was busy with other
# requests is turned into Saturated first (Database._run), so load alone
# never opens the breaker; one that timed out while the pool could not
# connect stays a failure.
DB_FAILURES: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.errors.ReadOnlySqlTransaction,  # reached a demoted primary
    psycopg.errors.AdminShutdown,
    TimeoutError,
)


class Connection(psycopg.AsyncConnection[Any]):
    """An AsyncConnection whose failed or cancelled connects close their
    sockets, and which tries the last known primary first.

    First, psycopg 3.3's multi-host connect keeps each failed attempt's error, with
    its traceback, in a list in its own frame: a reference cycle (error ->
    traceback -> frame -> list -> error). When the connect then fails or is
    cancelled (the readiness probe's timeout), that frame, the attempt in
    progress and its socket, still retrying its SYN, live until Python's
    cyclic garbage collector runs. When a partition heals, such a socket
    completes its handshake and never sends a startup packet; the server keeps
    a backend waiting for it for `authentication_timeout` (60 s), and a
    demoting primary's shutdown waits for that backend: the partition drill's
    rejoin went from about 25 s to 78-85 s. Clearing the finished frames of
    the traceback drops the cycle, so the attempt is closed at once.

    Second, a multi-host conninfo asking for a read-write session tries first
    the host that last gave one (in this process, for the same host list), then
    the others in their order. libpq tries hosts in order, each for up to
    `connect_timeout` (at least 2 s): when the first host's zone is cut off its
    packets are dropped, and every connect paid those 2 s first. The
    readiness probe's budget is 1 s, so every instance reported not ready for
    the whole partition although the pool had long found the new primary
    (zone drill, partition mode). The pool's connects teach the probe where
    the primary is; after a failover the first connect pays once.
    """

    # "<hosts>|<ports>" as configured -> the host that last accepted a read-write session
    last_primary: ClassVar[dict[str, str]] = {}

    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> Connection:  # type: ignore[override]
        conninfo, key = cls._primary_first(conninfo)
        try:
            conn = await super().connect(conninfo, **kwargs)
        except BaseException as ex:  # CancelledError included
            traceback.clear_frames(ex.__traceback__)
            raise
        if key:
            cls.last_primary[key] = conn.info.host
        return conn

    @classmethod
    def _primary_first(cls, conninfo: str) -> tuple[str, str | None]:
        params = conninfo_to_dict(conninfo)
        hosts = str(params.get("host") or "").split(",")
        if len(hosts) < 2 or params.get("target_session_attrs") != "read-write":
            return conninfo, None
        ports = str(params.get("port") or "").split(",")
        key = f"{params['host']}|{params.get('port') or ''}"
        preferred = cls.last_primary.get(key)
        if preferred not in hosts:
            return conninfo, key
        i = hosts.index(preferred)
        params["host"] = ",".join([hosts[i], *hosts[:i], *hosts[i + 1 :]])
        if len(ports) == len(hosts):
            params["port"] = ",".join([ports[i], *ports[:i], *ports[i + 1 :]])
        return make_conninfo(**params), key


def row_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "data": row["data"],
        "version": row["version"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


class Database:
    def __init__(self, config: Config, breaker: CircuitBreaker) -> None:
        self.config = config
        self.breaker = breaker
        self.timeout = config.db_timeout_s
        self._schema_ready = False
        self._in_use = 0  # connections handed to requests right now
        self._search: asyncio.Task[None] | None = None
        self.pool = AsyncConnectionPool(
            config.db_conninfo(),
            connection_class=Connection,
            min_size=config.db_pool_min,
            max_size=config.db_pool_max,
            open=False,
            timeout=config.db_timeout_s,
            check=AsyncConnectionPool.check_connection,
            reconnect_timeout=RECONNECT_TIMEOUT_S,
            reconnect_failed=self._reconnect_failed,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                # server side limit a bit past the client's, so the client decides
                "options": f"-c statement_timeout={int(config.db_timeout_s * 1000) + 500}",
            },
            name=f"{config.instance}-db",
        )

    async def _reconnect_failed(self, pool: AsyncConnectionPool[Any]) -> None:
        """psycopg_pool gave up on a slot and dropped it: start again at once.

        ``check()`` grows the pool by one slot (one growing attempt at a time),
        and a growing attempt that succeeds goes on to ``min_size``: while
        PostgreSQL is away one attempt keeps going, when it is back (under
        another name after a failover) the pool fills without waiting for
        requests.
        """
        if not pool.closed:
            with contextlib.suppress(Exception):
                await pool.check()

    def _search_primary(self) -> None:
        if self._search is not None and not self._search.done():
            return

        async def search() -> None:
            with contextlib.suppress(Exception):
                conn = await Connection.connect(self.config.db_conninfo())
                await conn.close()

        self._search = asyncio.get_running_loop().create_task(search(), name="db-primary-search")

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close(timeout=5)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        async with self.pool.connection(timeout=self.timeout) as conn:
            self._in_use += 1
            try:
                if not self._schema_ready:
                    await conn.execute(SCHEMA)
                    self._schema_ready = True
                yield conn
            finally:
                self._in_use -= 1

    async def _run(self, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        acquired = False

        async def work() -> list[dict[str, Any]]:
            nonlocal acquired
            async with self._connection() as conn:
                acquired = True
                cur = await conn.execute(query, params)
                return await cur.fetchall() if cur.description else []

        async with self.breaker.guard():
            try:
                return await asyncio.wait_for(work(), self.timeout)
            except (PoolTimeout, TimeoutError) as exc:
                # no connection within the budget: busy ones (load) or none (outage)?
                if not acquired and self._in_use >= self.pool.max_size:
                    raise Saturated(
                        "database",
                        f"all {self.pool.max_size} connections of this instance are busy "
                        f"(HASTACK_APP_DB_POOL_MAX) for {self.timeout} s",
                    ) from exc
                raise

    # -- readiness -----------------------------------------------------------
    async def ping(self, timeout: float) -> str:
        """A direct probe, outside the pool and the breaker: can we reach a primary now?

        It tries the last known primary first (Connection). When it fails, a
        search for the primary goes on in the background without the probe's
        budget, so that the next probe knows where to go: in a partition the
        pool may never look (no traffic reaches an instance HAProxy holds
        down), and the probe alone, 1 s at a time, never got past a first
        host that drops packets (connect_timeout is at least 2 s per host).
        """
        try:
            conn = await asyncio.wait_for(Connection.connect(self.config.db_conninfo()), timeout)
        except BaseException:  # the caller's own timeout cancels it (readiness: same budget)
            self._search_primary()
            raise
        try:
            cur = await asyncio.wait_for(conn.execute("SELECT inet_server_addr()::text AS addr"), timeout)
            row = await cur.fetchone()
            return str(row[0]) if row else "?"
        finally:
            await conn.close()

    # -- items ---------------------------------------------------------------
    async def create(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        rows = await self._run("INSERT INTO items (name, data) VALUES (%s, %s) RETURNING *", (name, Jsonb(data)))
        return row_out(rows[0])

    async def get(self, item_id: int) -> dict[str, Any] | None:
        rows = await self._run("SELECT * FROM items WHERE id = %s", (item_id,))
        return row_out(rows[0]) if rows else None

    async def list(self, limit: int, after_id: int) -> list[dict[str, Any]]:
        rows = await self._run("SELECT * FROM items WHERE id > %s ORDER BY id LIMIT %s", (after_id, limit))
        return [row_out(r) for r in rows]

    async def update(self, item_id: int, name: str, data: dict[str, Any]) -> dict[str, Any] | None:
        rows = await self._run(
            "UPDATE items SET name = %s, data = %s, version = version + 1, updated_at = now() "
            "WHERE id = %s RETURNING *",
            (name, Jsonb(data), item_id),
        )
        return row_out(rows[0]) if rows else None

    async def delete(self, item_id: int) -> bool:
        rows = await self._run("DELETE FROM items WHERE id = %s RETURNING id", (item_id,))
        return bool(rows)

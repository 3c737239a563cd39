"""Items in PostgreSQL: psycopg 3 async pools over libpq multi-host conninfo.

``target_session_attrs=read-write`` makes every new connection find the
current primary among the Patroni members; the pool checks a connection before
handing it out, so connections to a dead or demoted primary are dropped
instead of failing a request. Every call runs under the database breaker and
an overall timeout.

Degraded reads: a read the primary cannot answer (its breaker is open, or the
call failed for want of a primary) is served by a standby, through a second,
smaller pool (``prefer-standby``) under a breaker of its own. The answer says
so (``ReadSource``): which server, and how far its replay is behind what it
received. A standby further behind than ``db_read_max_lag_s`` is not read.
Such reads never fill the cache (main.py): an older row from a standby must
not outlive the failover in the cache tiers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .breaker import CircuitBreaker, CircuitOpenError, Saturated
from .config import Config
from .reqctx import sql_comment
from .schema import VERSION_QUERY, check_version

log = logging.getLogger("hastack_app.db")

# How long psycopg_pool retries one connection slot (after 1 s, then capped
# here) before it gives up and drops the slot; Database then starts a fresh
# attempt at once (_reconnect_failed), so the pool keeps trying for as long as
# PostgreSQL is gone, about once a second. Not longer: psycopg_pool's backoff
# doubles (1, 2, 4 s) and only one attempt grows the pool at a time, so with
# 10 s a primary that was back waited up to 4 s for the pool to look, while
# readiness (a direct connect) already said ready: the unit test
# test_readiness_half_opens_the_breaker_when_the_primary_is_back failed so.
# Not 0: in psycopg_pool 3.x that gives up after a second attempt at once,
# and the pool shrank to what requests grew it back to.
RECONNECT_TIMEOUT_S = 2.0

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
    the host that last gave one (in this process, for the same host list) and,
    if it has not connected within ``HEAD_START_S``, every other host at once:
    the first read-write session wins, the others are closed or cancelled.
    libpq tries hosts one after the other, each for up to `connect_timeout`
    (at least 2 s). When a host's zone is cut off its packets are dropped;
    when the old primary's machine died nothing answers it: every connect
    paid those 2 s first. The readiness probe's budget is 1 s, so every
    instance reported not ready for the whole partition (zone drill,
    partition mode); after a failover the pool's connects, retried about
    once a second, reached the new primary up to 3 s after it took writes
    (PostgreSQL kill under load: the app's writes failed 2.9 s past the
    write gap).
    """

    # "<hosts>|<ports>" as configured -> the host that last accepted a read-write session
    last_primary: ClassVar[dict[str, str]] = {}
    # How long the last known primary is tried alone before the others join in.
    HEAD_START_S: ClassVar[float] = 0.25

    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> Connection:  # type: ignore[override]
        attempts, key = cls._attempts(conninfo)
        if key is None:
            return await cls._connect_one(conninfo, **kwargs)
        conn = await cls._race(attempts, **kwargs)
        cls.last_primary[key] = conn.info.host
        return conn

    @classmethod
    async def _connect_one(cls, conninfo: str, **kwargs: Any) -> Connection:
        try:
            return await super().connect(conninfo, **kwargs)  # type: ignore[return-value]
        except BaseException as ex:  # CancelledError included
            traceback.clear_frames(ex.__traceback__)
            raise

    @classmethod
    async def _race(cls, attempts: list[str], **kwargs: Any) -> Connection:
        """The first attempt alone for HEAD_START_S, then all of them; the first
        connection wins. Every other attempt is cancelled, or closed if it
        connected too; all failed: an OperationalError naming each host's."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(cls._connect_one(attempts[0], **kwargs))]
        winner: asyncio.Task[Connection] | None = None
        errors: list[str] = []
        try:
            done, _ = await asyncio.wait(tasks, timeout=cls.HEAD_START_S)
            if not (done and not tasks[0].exception()):
                tasks += [loop.create_task(cls._connect_one(a, **kwargs)) for a in attempts[1:]]
            pending = set(tasks)
            while pending and winner is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is None and winner is None:
                        winner = task
            if winner is None:
                errors = [f"{t.exception()}".strip().replace("\n", " | ") for t in tasks]
        finally:
            for task in tasks:
                if task is not winner:
                    task.add_done_callback(_close_if_connected)
                    task.cancel()
        if winner is None:
            raise psycopg.OperationalError("no host gave a read-write session: " + " || ".join(errors))
        return winner.result()

    @classmethod
    def _attempts(cls, conninfo: str) -> tuple[list[str], str | None]:
        """One single-host conninfo per host, the last known primary first
        (key None: not a multi-host read-write conninfo, connect as given)."""
        params = conninfo_to_dict(conninfo)
        hosts = str(params.get("host") or "").split(",")
        if len(hosts) < 2 or params.get("target_session_attrs") != "read-write":
            return [conninfo], None
        ports = str(params.get("port") or "").split(",")
        if len(ports) != len(hosts):
            ports = ports[:1] * len(hosts)
        key = f"{params['host']}|{params.get('port') or ''}"
        order = list(range(len(hosts)))
        preferred = cls.last_primary.get(key)
        if preferred in hosts:
            i = hosts.index(preferred)
            order = [i, *order[:i], *order[i + 1 :]]
        return [
            make_conninfo(**{**params, "host": hosts[i], **({"port": ports[i]} if ports[i] else {})}) for i in order
        ], key


def _close_if_connected(task: asyncio.Task[Connection]) -> None:
    """A losing attempt that connected anyway: close it (in the background)."""
    if not task.cancelled() and task.exception() is None:
        asyncio.get_running_loop().create_task(task.result().close())


# On a standby: how far replay is behind what it received, in seconds of
# commit time (0 once it replayed everything it has; on a primary, 0).
STANDBY_QUERY = """
SELECT host(inet_server_addr()) AS server,
       pg_is_in_recovery() AS standby,
       CASE WHEN NOT pg_is_in_recovery() THEN 0
            WHEN pg_last_wal_receive_lsn() IS NOT NULL
                 AND pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0
            ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
       END::float8 AS lag_s
"""


@dataclass(frozen=True)
class ReadSource:
    """Where a read was answered: ``primary``, or ``standby`` (or ``primary``
    reached through the read pool, after a promotion) with its replay lag."""

    served_by: str
    server: str | None = None
    lag_s: float | None = None

    def headers(self) -> dict[str, str]:
        out = {"X-Served-By": self.served_by}
        if self.server is not None:
            out["X-Served-By-Server"] = self.server
        if self.lag_s is not None:
            out["X-Replica-Lag-S"] = f"{self.lag_s:.3f}"
        return out


PRIMARY = ReadSource("primary")


class StandbyBehind(RuntimeError):
    """The standby that answered is further behind than db_read_max_lag_s."""

    def __init__(self, server: str, lag_s: float, limit_s: float) -> None:
        super().__init__(
            f"standby {server} replays {lag_s:.1f} s behind what it received, over "
            f"HASTACK_APP_DB_READ_MAX_LAG_S={limit_s:g}"
        )
        self.retry_after_s = 2.0


async def standby_source(conn: psycopg.AsyncConnection[Any]) -> ReadSource:
    """Where a connection of the read pool landed, and how far behind it replays."""
    cur = await conn.execute(STANDBY_QUERY)
    info = await cur.fetchone()
    assert info is not None
    return ReadSource("standby" if info["standby"] else "primary", info["server"], info["lag_s"])


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
    def __init__(self, config: Config, breaker: CircuitBreaker, standby_breaker: CircuitBreaker | None = None) -> None:
        self.config = config
        self.breaker = breaker
        self.standby_breaker = standby_breaker
        self.timeout = config.db_timeout_s
        self._in_use: dict[str, int] = {"primary": 0, "standby": 0}  # connections handed out now
        self._search: asyncio.Task[None] | None = None
        self.pool = self._pool(config.db_conninfo(), config.db_pool_min, config.db_pool_max, "db")
        self.standbys = (
            self._pool(config.db_read_conninfo(), 0, config.db_read_pool_max, "db-read")
            if config.db_read_pool_max and standby_breaker is not None
            else None
        )

    def _pool(self, conninfo: str, min_size: int, max_size: int, name: str) -> AsyncConnectionPool[Any]:
        return AsyncConnectionPool(
            conninfo,
            connection_class=Connection,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=self.config.db_timeout_s,
            check=AsyncConnectionPool.check_connection,
            reconnect_timeout=RECONNECT_TIMEOUT_S,
            reconnect_failed=self._reconnect_failed,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                # server side limit a bit past the client's, so the client decides
                "options": f"-c statement_timeout={int(self.config.db_timeout_s * 1000) + 500}",
            },
            name=f"{self.config.instance}-{name}",
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
        if self.standbys is not None:
            await self.standbys.open(wait=False)

    async def close(self) -> None:
        if self.standbys is not None:
            await self.standbys.close(timeout=5)
        await self.pool.close(timeout=5)

    @asynccontextmanager
    async def _connection(self, which: str = "primary") -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        pool = self.pool if which == "primary" else self.standbys
        assert pool is not None
        async with pool.connection(timeout=self.timeout) as conn:
            self._in_use[which] += 1
            try:
                yield conn
            finally:
                self._in_use[which] -= 1

    async def _run(
        self, query: str, params: tuple[Any, ...] = (), which: str = "primary"
    ) -> tuple[list[dict[str, Any]], ReadSource]:
        acquired = False
        pool = self.pool if which == "primary" else self.standbys
        breaker = self.breaker if which == "primary" else self.standby_breaker
        assert pool is not None and breaker is not None

        async def work() -> tuple[list[dict[str, Any]], ReadSource]:
            nonlocal acquired
            async with self._connection(which) as conn:
                acquired = True
                source = await standby_source(conn) if which == "standby" else PRIMARY
                # the request id as a comment: a slow statement in the log or
                # pg_stat_activity leads to its access log line
                cur = await conn.execute(sql_comment() + query, params)
                return (await cur.fetchall() if cur.description else []), source

        async with breaker.guard():
            try:
                return await asyncio.wait_for(work(), self.timeout)
            except (PoolTimeout, TimeoutError) as exc:
                # no connection within the budget: busy ones (load) or none (outage)?
                if not acquired and self._in_use[which] >= pool.max_size:
                    setting = "HASTACK_APP_DB_POOL_MAX" if which == "primary" else "HASTACK_APP_DB_READ_POOL_MAX"
                    raise Saturated(
                        "database",
                        f"all {pool.max_size} {which} connections of this instance are busy "
                        f"({setting}) for {self.timeout} s",
                    ) from exc
                raise

    async def _write(self, query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        rows, _ = await self._run(query, params)
        return rows

    async def _read(self, query: str, params: tuple[Any, ...]) -> tuple[list[dict[str, Any]], ReadSource]:
        """From the primary; when it cannot answer (no primary), from a standby."""
        try:
            return await self._run(query, params)
        except Saturated:
            raise
        except (CircuitOpenError, *DB_FAILURES) as exc:
            if self.standbys is None:
                raise
            try:
                rows, source = await self._run(query, params, "standby")
            except Exception as standby_exc:
                log.warning(
                    "no primary and no standby answered a read",
                    extra={"primary_error": repr(exc)[:200], "standby_error": repr(standby_exc)[:200]},
                )
                raise exc from None
            return rows, self._within_lag(source)

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
            try:
                cur = await asyncio.wait_for(conn.execute(VERSION_QUERY), timeout)
                version = await cur.fetchone()
            except psycopg.errors.UndefinedTable:
                version = None
            check_version(int(version[0]) if version else None)
            return str(row[0]) if row else "?"
        finally:
            await conn.close()

    async def ping_standby(self, timeout: float) -> ReadSource:
        """Can the read pool serve now, and from where (a pooled connection)."""
        if self.standbys is None or self.standby_breaker is None:
            raise RuntimeError("degraded reads are off (HASTACK_APP_DB_READ_POOL_MAX=0)")
        async with self.standbys.connection(timeout=timeout) as conn:
            source = await asyncio.wait_for(standby_source(conn), timeout)
        return self._within_lag(source)

    def _within_lag(self, source: ReadSource) -> ReadSource:
        """``source``, unless it replays further behind than db_read_max_lag_s (StandbyBehind)."""
        if source.lag_s is not None and source.lag_s > self.config.db_read_max_lag_s:
            raise StandbyBehind(source.server or "?", source.lag_s, self.config.db_read_max_lag_s)
        return source

    # -- items ---------------------------------------------------------------
    async def create(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        rows = await self._write("INSERT INTO items (name, data) VALUES (%s, %s) RETURNING *", (name, Jsonb(data)))
        return row_out(rows[0])

    async def get(self, item_id: int) -> tuple[dict[str, Any] | None, ReadSource]:
        rows, source = await self._read("SELECT * FROM items WHERE id = %s", (item_id,))
        return (row_out(rows[0]) if rows else None), source

    async def list(self, limit: int, after_id: int) -> tuple[list[dict[str, Any]], ReadSource]:
        rows, source = await self._read("SELECT * FROM items WHERE id > %s ORDER BY id LIMIT %s", (after_id, limit))
        return [row_out(r) for r in rows], source

    async def update(self, item_id: int, name: str, data: dict[str, Any]) -> dict[str, Any] | None:
        rows = await self._write(
            "UPDATE items SET name = %s, data = %s, version = version + 1, updated_at = now() "
            "WHERE id = %s RETURNING *",
            (name, Jsonb(data), item_id),
        )
        return row_out(rows[0]) if rows else None

    async def delete(self, item_id: int) -> bool:
        rows = await self._write("DELETE FROM items WHERE id = %s RETURNING id", (item_id,))
        return bool(rows)

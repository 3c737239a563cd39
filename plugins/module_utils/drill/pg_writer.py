"""The drill writer: one row every ~20 ms through the application's conninfo.

Each attempt gets its own id and ends in one of three outcomes:

``ack``
    the server answered the INSERT with its result: the row is committed (and,
    under synchronous replication, on the synchronous standby).
``error``
    the write certainly did not commit: no connection, the query could not be
    sent, or the server rejected it (read-only, shutting down, ...).
``unknown``
    the query may have reached the server but no clean answer came back: the
    client-side timeout expired (the connection is then dropped, never
    cancelled), the connection broke while waiting, or the server said the
    commit stopped waiting for the synchronous standby. Not acknowledged.

After anything but ``ack`` the connection is dropped and the next attempt
reconnects through the multi-host conninfo, exactly as the application would.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

from ansible_collections.hastack.ha.plugins.module_utils.drill import pgio
from ansible_collections.hastack.ha.plugins.module_utils.drill.clock import Clock

SCHEMA = "hastack_drill"
TABLE = f"{SCHEMA}.writes"

DDL = (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " run_id text NOT NULL,"
    " id bigint NOT NULL,"
    " written_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (run_id, id))",
)

# The server that acknowledged, and its timeline (from the current WAL file
# name): a legitimate flip-back A -> B -> A always shows a newer timeline on A.
INSERT = (
    f"INSERT INTO {TABLE} (run_id, id) VALUES ($1, $2) "
    "RETURNING host(inet_server_addr()), "
    "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
)

SELECT_IDS = f"SELECT id FROM {TABLE} WHERE run_id = $1 ORDER BY id"

OUTCOMES = ("ack", "error", "unknown")


@dataclass
class WriteAttempt:
    id: int
    t_start: float
    t_end: float
    outcome: str
    server: str | None = None
    timeline: int | None = None
    error: str | None = None
    phase: str = "query"  # "connect" when no connection could be opened

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["t_start"] = round(self.t_start, 6)
        d["t_end"] = round(self.t_end, 6)
        return d


def ensure_schema(conn: Any, timeout_s: float) -> None:
    """Create the drill schema and table if missing (idempotent)."""
    for statement in DDL:
        pgio.execute(conn, statement, timeout_s=timeout_s)


class PgWriter(threading.Thread):
    """Insert a row every ``interval_s`` and record every attempt.

    ``conninfo`` is the application's libpq conninfo (multi-host with
    ``target_session_attrs=read-write`` on the lab); ``password`` is passed
    apart so it never lands in a log or a report.
    """

    def __init__(
        self,
        conninfo: str,
        run_id: str,
        *,
        password: str | None = None,
        interval_s: float = 0.02,
        write_timeout_s: float = 3.0,
        clock: Clock | None = None,
        application_name: str = "hastack-drill-writer",
    ) -> None:
        super().__init__(name=f"drill-writer-{run_id}", daemon=True)
        self.conninfo = conninfo
        self.run_id = run_id
        self.password = password
        self.interval_s = interval_s
        self.write_timeout_s = write_timeout_s
        self.clock = clock or Clock.start()
        self.application_name = application_name
        self.t_started: float | None = None
        self.t_stopped: float | None = None
        self.fatal: str | None = None
        self._attempts: list[WriteAttempt] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._conn: Any = None
        self._schema_ready = False
        self._next_id = 0

    # -- control -----------------------------------------------------------
    def stop(self) -> None:
        """Ask the writer to stop after the attempt in progress (bounded by the timeouts)."""
        self._stop_event.set()

    def attempts(self) -> list[WriteAttempt]:
        with self._lock:
            return list(self._attempts)

    # -- loop --------------------------------------------------------------
    def run(self) -> None:
        self.t_started = self.clock.now()
        next_t = self.t_started
        try:
            while not self._stop_event.is_set():
                self.write_once()
                next_t += self.interval_s
                now = self.clock.now()
                if next_t < now:  # late (reconnect, slow commit): do not burst to catch up
                    next_t = now
                self._stop_event.wait(next_t - now)
        except Exception as ex:  # a bug here must end the drill loudly, not silently
            self.fatal = f"{type(ex).__name__}: {ex}"
        finally:
            pgio.drop(self._conn)
            self._conn = None
            self.t_stopped = self.clock.now()

    def write_once(self) -> WriteAttempt:
        """One attempt: (re)connect if needed, insert, classify, record."""
        attempt = self._attempt()
        with self._lock:
            self._attempts.append(attempt)
        return attempt

    def _attempt(self) -> WriteAttempt:
        self._next_id += 1
        wid = self._next_id
        t_start = self.clock.now()
        if self._conn is None:
            try:
                self._conn = pgio.connect(
                    self.conninfo,
                    password=self.password,
                    application_name=self.application_name,
                )
                if not self._schema_ready:
                    ensure_schema(self._conn, self.write_timeout_s)
                    self._schema_ready = True
            except (pgio.psycopg.Error, pgio.PgQueryError) as ex:
                self._drop()
                return WriteAttempt(
                    wid,
                    t_start,
                    self.clock.now(),
                    "error",
                    error=pgio.short_error(ex),
                    phase="connect",
                )
        try:
            result = pgio.execute(self._conn, INSERT, (self.run_id, str(wid)), timeout_s=self.write_timeout_s)
        except pgio.PgQueryError as ex:
            self._drop()
            outcome = "unknown" if ex.sent and not ex.server_error else "error"
            return WriteAttempt(wid, t_start, self.clock.now(), outcome, error=pgio.short_error(ex))
        t_end = self.clock.now()
        server, timeline = result.rows[0] if result.rows else (None, None)
        tl = int(timeline) if timeline is not None else None
        if result.syncrep_cancelled:
            # Committed locally, maybe on no standby: exactly what must not count.
            self._drop()
            return WriteAttempt(wid, t_start, t_end, "unknown", server, tl, error="; ".join(result.notices))
        return WriteAttempt(wid, t_start, t_end, "ack", server, tl)

    def _drop(self) -> None:
        pgio.drop(self._conn)
        self._conn = None


def read_back_ids(conn: Any, run_id: str, timeout_s: float = 10.0) -> tuple[list[int], str | None]:
    """All ids of ``run_id`` present on the server behind ``conn``, and its address."""
    rows = pgio.execute(conn, SELECT_IDS, (run_id,), timeout_s=timeout_s).rows
    server = pgio.execute(conn, "SELECT host(inet_server_addr())", timeout_s=timeout_s).rows
    return [int(r[0]) for r in rows], (server[0][0] if server else None)

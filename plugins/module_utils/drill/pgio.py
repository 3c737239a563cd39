"""Low-level PostgreSQL I/O with a client-side timeout that never cancels.

Why not ``statement_timeout``, ``Connection.cancel()`` or asyncio cancellation:
a commit that waits for the synchronous standby, once cancelled, is reported to
the client as *successful* (with a WARNING) although no standby has it. A drill
that counted it as acknowledged could "lose" a write that was never safe.

So a query here is sent with libpq's asynchronous API and the answer is awaited
with ``select()`` on the connection's socket until a deadline. On timeout the
caller drops the connection (:func:`drop`): ``PQfinish`` closes the socket after
a Terminate message. No CancelRequest is ever sent: that would need a *new*
connection to the postmaster (``PQcancel``), which nothing in this module opens.
"""

from __future__ import annotations

import contextlib
import select
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PSYCOPG_IMPORT_ERROR: str | None
try:
    import psycopg
    from psycopg import pq
except ImportError:  # pragma: no cover - reported by the modules
    psycopg = None
    pq = None
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()
else:
    PSYCOPG_IMPORT_ERROR = None

# Messages PostgreSQL sends when a commit stopped waiting for the synchronous
# standby although it is already committed locally (syncrep.c). Such a
# "success" is not an acknowledgement of a replicated write.
SYNCREP_WARNING_MARKERS = ("synchronous replication",)


class PgQueryError(Exception):
    """A query that did not return a clean result.

    ``sent`` tells whether the query may have reached the server (then its
    effect is unknown unless ``server_error`` says the server rejected it);
    ``timed_out`` tells the client gave up waiting.
    """

    def __init__(
        self,
        message: str,
        *,
        sent: bool,
        timed_out: bool = False,
        server_error: bool = False,
        sqlstate: str | None = None,
    ) -> None:
        super().__init__(message)
        self.sent = sent
        self.timed_out = timed_out
        self.server_error = server_error
        self.sqlstate = sqlstate


@dataclass
class QueryResult:
    rows: list[tuple[str | None, ...]]
    notices: list[str] = field(default_factory=list)

    @property
    def syncrep_cancelled(self) -> bool:
        """True when the server said the commit stopped waiting for the standby."""
        return any(m in n.lower() for n in self.notices for m in SYNCREP_WARNING_MARKERS)


def connect(conninfo: str, *, password: str | None = None, **params: Any) -> Any:
    """Open an autocommit connection (psycopg honours ``connect_timeout`` per host).

    Raises ``psycopg.Error`` when no host accepted, with every host's reason.
    """
    if password is not None:
        params["password"] = password
    conn = psycopg.Connection.connect(conninfo, autocommit=True, **params)
    conn.pgconn.nonblocking = 1
    return conn


def drop(conn: Any) -> None:
    """Close a connection without a cancel request (PQfinish: Terminate + close)."""
    if conn is None:
        return
    with contextlib.suppress(Exception):  # closing a dead connection may fail: nothing to do
        conn.close()


def _wait(fd: int, *, write: bool, deadline: float) -> bool:
    """Wait until the socket is ready (or in error); False on deadline."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN)
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    return bool(poller.poll(left * 1000))


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def execute(
    conn: Any,
    query: str,
    params: Sequence[str | None] = (),
    *,
    timeout_s: float,
) -> QueryResult:
    """Run one statement (text parameters, text results) within ``timeout_s``.

    Returns the rows of the last result and the notices received meanwhile.
    Raises :class:`PgQueryError`; after it the caller must :func:`drop` the
    connection (this function never cancels and never closes).
    """
    pgconn = conn.pgconn
    notices: list[str] = []

    def on_notice(diag: Any) -> None:
        notices.append(f"{diag.severity_nonlocalized or diag.severity}: {diag.message_primary}")

    conn.add_notice_handler(on_notice)
    try:
        return _execute(pgconn, query, params, timeout_s, notices)
    finally:
        conn.remove_notice_handler(on_notice)


def _execute(
    pgconn: Any,
    query: str,
    params: Sequence[str | None],
    timeout_s: float,
    notices: list[str],
) -> QueryResult:
    deadline = time.monotonic() + timeout_s
    encoded = [None if p is None else p.encode() for p in params]
    try:
        # Parse/Bind/Execute/Sync: an autocommit statement commits at Sync, so
        # a message that failed to leave the client entirely cannot commit.
        pgconn.send_query_params(query.encode(), encoded)
    except psycopg.Error as ex:
        raise PgQueryError(f"could not send the query: {_first_line(ex)}", sent=False) from None
    fd = pgconn.socket
    try:
        while pgconn.flush() != 0:
            if not _wait(fd, write=True, deadline=deadline):
                raise PgQueryError(f"query not sent within {timeout_s:g} s", sent=True, timed_out=True)
    except psycopg.Error as ex:
        raise PgQueryError(f"connection lost while sending: {_first_line(ex)}", sent=True) from None

    rows: list[tuple[str | None, ...]] = []
    error: PgQueryError | None = None
    while True:
        try:
            pgconn.consume_input()
            busy = pgconn.is_busy()
        except psycopg.Error as ex:
            if error is not None:  # the server said why before closing (FATAL): not committed
                raise error from None
            raise PgQueryError(f"connection lost while waiting for the answer: {_first_line(ex)}", sent=True) from None
        if busy:
            if not _wait(fd, write=False, deadline=deadline):
                raise PgQueryError(
                    f"no answer within {timeout_s:g} s (connection dropped, not cancelled)",
                    sent=True,
                    timed_out=True,
                )
            continue
        res = pgconn.get_result()
        if res is None:
            break
        status = res.status
        if status in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            rows = [tuple(_text(res.get_value(r, c)) for c in range(res.nfields)) for r in range(res.ntuples)]
        elif error is None:
            message = _text(res.error_message) or f"result status {status.name}"
            sqlstate = _text(res.error_field(pq.DiagnosticField.SQLSTATE))
            error = PgQueryError(
                message.strip().splitlines()[0],
                sent=True,
                server_error=True,
                sqlstate=sqlstate,
            )
    if error is not None:
        raise error
    return QueryResult(rows=rows, notices=notices)


def _first_line(ex: BaseException) -> str:
    text = str(ex).strip()
    return text.splitlines()[0] if text else type(ex).__name__


def short_error(ex: BaseException, limit: int = 300) -> str:
    """One line (psycopg's multi-host errors span several), at most ``limit`` chars."""
    text = " | ".join(line.strip() for line in str(ex).strip().splitlines() if line.strip())
    return (text or type(ex).__name__)[:limit]

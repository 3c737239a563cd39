"""The rows of a restore drill: written before and after a target time T on the
live cluster, then looked for in an instance restored to T.

A restore to T must contain every row committed before T and none committed
after it. The two batches are separated by ``gap_s`` on each side of T, and
T is the server's own ``clock_timestamp()`` (the clock recovery compares
commit records with), so every commit of the first batch is well before T
and every commit of the second well after it, whatever the client's clock.
Each row is one autocommit ``INSERT``: with synchronous replication its
commit returns once a standby has it.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PSYCOPG_IMPORT_ERROR: str | None
try:
    import psycopg
except ImportError:  # pragma: no cover - reported by the module
    psycopg = None
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()
else:
    PSYCOPG_IMPORT_ERROR = None

TABLE = "hastack_restore_drill"
CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " run_id text NOT NULL, id integer NOT NULL, batch text NOT NULL,"
    " written_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (run_id, id))"
)


@dataclass
class WriteResult:
    run_id: str
    target_time: str
    before_ids: list[int]
    after_ids: list[int]
    database_size_bytes: int
    last_archived_wal: str | None
    last_archived_age_s: float | None
    archive_failed_count: int
    server_version: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _connect(conninfo: str, password: str | None, timeout_s: float) -> Any:
    if psycopg is None:
        raise RuntimeError(f"psycopg 3 is needed on the controller: {PSYCOPG_IMPORT_ERROR}")
    params: dict[str, Any] = {"connect_timeout": max(1, int(timeout_s))}
    if password:
        params["password"] = password
    return psycopg.connect(conninfo, autocommit=True, **params)


def write_rows(
    conninfo: str,
    password: str | None,
    *,
    rows_before: int = 50,
    rows_after: int = 50,
    gap_s: float = 1.5,
    timeout_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> WriteResult:
    """Write the ``before`` rows, take T from the server, write the ``after`` rows."""
    if rows_before < 1 or rows_after < 1:
        raise ValueError(f"rows_before and rows_after must be >= 1, got {rows_before} and {rows_after}")
    if gap_s <= 0:
        raise ValueError(f"gap_s must be > 0 seconds, got {gap_s}")
    run_id = uuid.uuid4().hex[:12]
    with _connect(conninfo, password, timeout_s) as conn:
        conn.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")
        if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise RuntimeError(f"{conn.info.host}: is a standby; the drill writes to the primary")
        version = conn.execute("SHOW server_version").fetchone()[0]
        archiver = conn.execute(
            "SELECT last_archived_wal, extract(epoch FROM clock_timestamp() - last_archived_time)::float8,"
            " failed_count FROM pg_stat_archiver"
        ).fetchone()
        conn.execute(CREATE_TABLE)
        before = list(range(1, rows_before + 1))
        after = list(range(rows_before + 1, rows_before + rows_after + 1))
        for i in before:
            conn.execute(f"INSERT INTO {TABLE} (run_id, id, batch) VALUES (%s, %s, 'before')", (run_id, i))
        sleep(gap_s)
        target = conn.execute(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
        ).fetchone()[0]
        sleep(gap_s)
        for i in after:
            conn.execute(f"INSERT INTO {TABLE} (run_id, id, batch) VALUES (%s, %s, 'after')", (run_id, i))
        size = conn.execute("SELECT sum(pg_database_size(datname))::bigint FROM pg_database").fetchone()[0]
    return WriteResult(
        run_id=run_id,
        target_time=f"{target}+00",
        before_ids=before,
        after_ids=after,
        database_size_bytes=int(size),
        last_archived_wal=archiver[0],
        last_archived_age_s=None if archiver[1] is None else round(float(archiver[1]), 3),
        archive_failed_count=int(archiver[2]),
        server_version=str(version),
    )


def check_rows(
    conninfo: str,
    password: str | None,
    run_id: str,
    before_ids: list[int],
    after_ids: list[int],
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Which rows of ``run_id`` the (restored) instance has, and the verdict."""
    with _connect(conninfo, password, timeout_s) as conn:
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()[0]
        present = (
            [r[0] for r in conn.execute(f"SELECT id FROM {TABLE} WHERE run_id = %s ORDER BY id", (run_id,))]
            if exists
            else []
        )
    return judge_rows(present, before_ids, after_ids, in_recovery=bool(in_recovery))


def judge_rows(
    present: list[int], before_ids: list[int], after_ids: list[int], *, in_recovery: bool = False
) -> dict[str, Any]:
    """Every ``before`` row present, no ``after`` row, recovery finished."""
    have = set(present)
    missing = sorted(set(before_ids) - have)
    extra = sorted(set(after_ids) & have)
    problems = []
    if missing:
        problems.append(f"{len(missing)} row(s) committed before the target are missing (ids {missing[:10]})")
    if extra:
        problems.append(f"{len(extra)} row(s) committed after the target are present (ids {extra[:10]})")
    if in_recovery:
        problems.append("the restored instance is still in recovery (not promoted at the target)")
    return {
        "present": len(have),
        "missing_before": missing,
        "present_after": extra,
        "in_recovery": in_recovery,
        "ok": not problems,
        "problems": problems,
    }

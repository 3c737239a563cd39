"""The app's schema, changed by a migration step, never by a request.

``python -m hastack_app migrate`` applies every migration newer than the
database's, in one transaction, under an advisory lock: two runs at once
(two hosts, a retried Kubernetes Job) wait for each other instead of racing
``CREATE TABLE`` into a unique violation. The role runs it once before it
starts or restarts any instance; on Kubernetes it is a Job. The app checks
the version in its readiness probe: an instance whose schema is not there
yet is not ready, it does not answer 500s.
"""

from __future__ import annotations

import psycopg

# (version, name, DDL): append only; a released migration is never edited.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "items",
        """
        CREATE TABLE IF NOT EXISTS items (
            id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
            data       jsonb NOT NULL DEFAULT '{}'::jsonb,
            version    integer NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """,
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
# pg_advisory_xact_lock key: "hastack" in ASCII, one lock per database
LOCK_KEY = 0x6861737461636B
VERSION_TABLE = "hastack_app_schema"
VERSION_QUERY = f"SELECT coalesce(max(version), 0) AS version FROM {VERSION_TABLE}"


class SchemaError(RuntimeError):
    """The database's schema is not the one this app needs."""


def migrate(conninfo: str) -> dict[str, object]:
    """Bring the schema to SCHEMA_VERSION; returns what it found and did."""
    with psycopg.connect(conninfo) as conn:  # one transaction, committed on exit
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
            "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute(VERSION_QUERY).fetchone()
        found = int(row[0]) if row else 0
        # newer than this app (a rollback): migrations only add, so it serves
        applied = []
        for version, name, ddl in MIGRATIONS:
            if version > found:
                conn.execute(ddl)
                conn.execute(f"INSERT INTO {VERSION_TABLE} (version, name) VALUES (%s, %s)", (version, name))
                applied.append(f"{version}:{name}")
    return {"from": found, "to": max(found, SCHEMA_VERSION), "applied": applied, "changed": bool(applied)}


def check_version(found: int | None) -> None:
    """Raise SchemaError when ``found`` (the database's version) is older than this
    app's; a newer one serves (migrations only add: expand, then contract later)."""
    if found is None or found < SCHEMA_VERSION:
        raise SchemaError(
            f"schema version {found or 0}, this app needs {SCHEMA_VERSION}: "
            "run `python -m hastack_app migrate` (the role and the Kubernetes Job do)"
        )

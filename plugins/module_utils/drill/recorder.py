"""The recorder: writer + sampler for the length of a drill, then the read-back.

:func:`record` runs until the stop file appears (or ``max_duration_s``), reads
back every id of the run from the final primary, writes the raw JSON and
returns it. Its structure (``format: hastack.drill.raw/1``)::

    run_id, format, started_at (ISO, UTC), anchor {mono, wall}
    config   {conninfo (no password), members [{name, host, port}], dbname, user,
              interval_ms, sample_interval_ms, write_timeout_s, sample_timeout_s,
              max_duration_s, stop_file, events_file}
    writer   {t_start, t_stop, fatal, stuck,
              attempts [{id, t_start, t_end, outcome, server, timeline, error, phase}]}
    samples  {member: [{t_start, t_end, state, timeline, error}]}
    sampler  {fatal {member: text}, stuck [member]}
    events   [{t, t_wall, t_seen, event, target, ...}]
    stop     {reason: stop_file | max_duration | writer_failed, t}
    readback {ok, server, ids [every id of the run on the final primary],
              attempts, error, t}

Every ``t*`` is seconds since ``anchor`` (monotonic); ``anchor.wall + t`` is
epoch seconds.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ansible_collections.hastack.ha.plugins.module_utils.drill import pgio
from ansible_collections.hastack.ha.plugins.module_utils.drill.analysis import parse_wall
from ansible_collections.hastack.ha.plugins.module_utils.drill.clock import Clock
from ansible_collections.hastack.ha.plugins.module_utils.drill.fileio import write_json
from ansible_collections.hastack.ha.plugins.module_utils.drill.pg_sampler import (
    ClusterSampler,
    Member,
)
from ansible_collections.hastack.ha.plugins.module_utils.drill.pg_writer import (
    PgWriter,
    ensure_schema,
    read_back_ids,
)

RAW_FORMAT = "hastack.drill.raw/1"


class RecorderError(Exception):
    """The recording could not start or could not be completed."""


@dataclass
class RecorderConfig:
    conninfo: str
    members: list[Member]
    run_id: str
    output: str
    stop_file: str
    password: str | None = None
    dbname: str = "postgres"
    user: str = "postgres"
    interval_s: float = 0.02
    sample_interval_s: float = 0.2
    write_timeout_s: float = 3.0
    sample_timeout_s: float = 1.0
    max_duration_s: float = 600.0
    events_file: str | None = None
    readback_timeout_s: float = 30.0
    connect_timeout_s: int = 2
    poll_s: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)


def writer_conninfo(conninfo: str, dbname: str, user: str, connect_timeout_s: int) -> str:
    """The application's conninfo, completed with what a drill needs if absent."""
    params = pgio.psycopg.conninfo.conninfo_to_dict(conninfo)
    params.setdefault("dbname", dbname)
    params.setdefault("user", user)
    params.setdefault("connect_timeout", connect_timeout_s)
    params.setdefault("target_session_attrs", "read-write")
    return pgio.psycopg.conninfo.make_conninfo(**params)


def public_conninfo(conninfo: str) -> str:
    params = pgio.psycopg.conninfo.conninfo_to_dict(conninfo)
    params.pop("password", None)
    return pgio.psycopg.conninfo.make_conninfo(**params)


def _host_count(conninfo: str) -> int:
    params = pgio.psycopg.conninfo.conninfo_to_dict(conninfo)
    return max(1, len(str(params.get("host") or params.get("hostaddr") or "x").split(",")))


class EventTail:
    """Follow a JSON-lines file the playbook appends events to.

    Lines are read as they complete, so an event without ``t_wall`` still gets
    the time it was seen (``t_seen``, at most ``poll_s`` late).
    """

    def __init__(self, path: str | None, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self.offset = 0
        self.partial = b""
        self.events: list[dict[str, Any]] = []

    def poll(self) -> None:
        if not self.path:
            return
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        if not chunk:
            return
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        t_seen = self.clock.now()
        for line in lines:
            if line.strip():
                self.events.append(self._parse(line, t_seen))

    def _parse(self, line: bytes, t_seen: float) -> dict[str, Any]:
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("not a JSON object")
        except ValueError as ex:
            item = {"event": "unparsed", "text": line.decode(errors="replace"), "error": str(ex)}
        item["t_seen"] = round(t_seen, 6)
        wall = parse_wall(item.get("t_wall"))
        if wall is not None:
            item["t_wall"] = wall
            item["t"] = round(self.clock.from_wall(wall), 6)
        else:
            item["t_wall"] = round(self.clock.to_wall(t_seen), 6)
            item["t"] = item["t_seen"]
        return item


def _prepare(config: RecorderConfig, conninfo: str) -> None:
    """Check the cluster takes writes and the table exists, retrying like the read-back."""
    deadline = time.monotonic() + config.readback_timeout_s
    last = "no attempt"
    while time.monotonic() < deadline:
        conn = None
        try:
            conn = pgio.connect(conninfo, password=config.password, application_name="hastack-drill-setup")
            ensure_schema(conn, config.write_timeout_s)
            return
        except (pgio.psycopg.Error, pgio.PgQueryError) as ex:
            last = pgio.short_error(ex)
        finally:
            pgio.drop(conn)
        time.sleep(1)
    raise RecorderError(
        f"the cluster did not take writes within {config.readback_timeout_s:g} s before the "
        f"drill started ({last}); check it is healthy before disrupting it"
    )


def read_back(config: RecorderConfig, conninfo: str, clock: Clock) -> dict[str, Any]:
    """Every id of the run on the current primary, retrying for ``readback_timeout_s``."""
    deadline = time.monotonic() + config.readback_timeout_s
    attempts = 0
    last = None
    while True:
        attempts += 1
        conn = None
        try:
            conn = pgio.connect(conninfo, password=config.password, application_name="hastack-drill-readback")
            ids, server = read_back_ids(conn, config.run_id, timeout_s=10.0)
            return {
                "ok": True,
                "server": server,
                "ids": ids,
                "attempts": attempts,
                "error": None,
                "t": round(clock.now(), 6),
            }
        except (pgio.psycopg.Error, pgio.PgQueryError) as ex:
            last = pgio.short_error(ex)
        finally:
            pgio.drop(conn)
        if time.monotonic() >= deadline:
            return {
                "ok": False,
                "server": None,
                "ids": [],
                "attempts": attempts,
                "error": f"no primary answered within {config.readback_timeout_s:g} s: {last}",
                "t": round(clock.now(), 6),
            }
        time.sleep(1)


def wait_for_stop(
    events: EventTail, writer: Any, clock: Clock, stop_file: str, max_duration_s: float, poll_s: float
) -> str:
    """Follow the events file until the drill says stop; return why it stopped.

    Shared by the PostgreSQL and Redis recorders: the stop file appeared, the
    safety bound ``max_duration_s`` passed, or the writer thread died.
    """
    while True:
        events.poll()
        if os.path.exists(stop_file):
            return "stop_file"
        if clock.now() >= max_duration_s:
            return "max_duration"
        if not writer.is_alive():
            return "writer_failed"
        time.sleep(poll_s)


def record(config: RecorderConfig) -> dict[str, Any]:
    """Run the whole recording; write ``config.output``; return the raw data."""
    if os.path.exists(config.stop_file):
        raise RecorderError(
            f"stop file {config.stop_file} exists before the drill started: remove it (the recorder would stop at once)"
        )
    conninfo = writer_conninfo(config.conninfo, config.dbname, config.user, config.connect_timeout_s)
    _prepare(config, conninfo)

    clock = Clock.start()
    started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    events = EventTail(config.events_file, clock)
    sampler = ClusterSampler(
        config.members,
        dbname=config.dbname,
        user=config.user,
        password=config.password,
        interval_s=config.sample_interval_s,
        timeout_s=config.sample_timeout_s,
        connect_timeout_s=config.connect_timeout_s,
        clock=clock,
    )
    writer = PgWriter(
        conninfo,
        config.run_id,
        password=config.password,
        interval_s=config.interval_s,
        write_timeout_s=config.write_timeout_s,
        clock=clock,
    )
    sampler.start()
    writer.start()
    try:
        reason = wait_for_stop(events, writer, clock, config.stop_file, config.max_duration_s, config.poll_s)
    finally:
        t_stop = clock.now()
        writer.stop()
        # Bounded by our own timeouts: the query in flight, then one connect per host.
        per_host = max(2, config.connect_timeout_s)
        writer.join(config.write_timeout_s + _host_count(conninfo) * per_host + 5)
        stuck_lanes = sampler.stop(config.sample_timeout_s + per_host + 5)
        events.poll()

    readback = read_back(config, conninfo, clock)
    raw = {
        "format": RAW_FORMAT,
        "run_id": config.run_id,
        "started_at": started_at,
        "anchor": clock.anchor(),
        "config": {
            "conninfo": public_conninfo(conninfo),
            "members": [{"name": m.name, "host": m.host, "port": m.port} for m in config.members],
            "dbname": config.dbname,
            "user": config.user,
            "interval_ms": round(config.interval_s * 1000),
            "sample_interval_ms": round(config.sample_interval_s * 1000),
            "write_timeout_s": config.write_timeout_s,
            "sample_timeout_s": config.sample_timeout_s,
            "max_duration_s": config.max_duration_s,
            "stop_file": config.stop_file,
            "events_file": config.events_file,
            **config.extra,
        },
        "writer": {
            "t_start": None if writer.t_started is None else round(writer.t_started, 6),
            "t_stop": round(writer.t_stopped if writer.t_stopped is not None else t_stop, 6),
            "fatal": writer.fatal,
            "stuck": writer.is_alive(),
            "attempts": [a.as_dict() for a in writer.attempts()],
        },
        "samples": {m: [s.as_dict() for s in rows] for m, rows in sampler.samples().items()},
        "sampler": {"fatal": sampler.fatal(), "stuck": stuck_lanes},
        "events": events.events,
        "stop": {"reason": reason, "t": round(t_stop, 6)},
        "readback": readback,
    }
    write_json(config.output, raw)
    return raw


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Counts for the module result (the full data is in the output file)."""
    counts = {"attempted": 0, "ack": 0, "error": 0, "unknown": 0}
    for a in raw["writer"]["attempts"]:
        counts["attempted"] += 1
        counts[a["outcome"]] += 1
    acked = {a["id"] for a in raw["writer"]["attempts"] if a["outcome"] == "ack"}
    present = set(raw["readback"]["ids"])
    return {
        "run_id": raw["run_id"],
        "stop_reason": raw["stop"]["reason"],
        "duration_s": raw["stop"]["t"],
        "writes": counts,
        "samples": {m: len(rows) for m, rows in raw["samples"].items()},
        "events": len(raw["events"]),
        "readback": {
            "ok": raw["readback"]["ok"],
            "server": raw["readback"]["server"],
            "ids": len(raw["readback"]["ids"]),
            "error": raw["readback"]["error"],
            "acked_missing": len(acked - present) if raw["readback"]["ok"] else None,
        },
        "writer_fatal": raw["writer"]["fatal"],
        "sampler_fatal": raw["sampler"]["fatal"],
    }

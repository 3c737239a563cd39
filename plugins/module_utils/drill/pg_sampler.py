"""Who accepts writes: every member sampled on its own, every ~200 ms.

One thread per member, each with its own single-host connection, so a frozen
member (SIGSTOP, partition) stalls only its own lane. A sample is

``primary``  the member answered ``pg_is_in_recovery() = false`` (it accepts writes)
``replica``  it answered ``true``
``unknown``  no answer within the timeout, or no connection: *not* writable

with the interval ``[t_start, t_end]`` in which the answer was produced (the
member was in that state at some instant of it) and, when cheap, its timeline.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

from ansible_collections.hastack.ha.plugins.module_utils.drill import pgio
from ansible_collections.hastack.ha.plugins.module_utils.drill.clock import Clock

STATES = ("primary", "replica", "unknown")

# Timeline: on a primary from the current WAL file name (exact right after a
# promotion), on a standby from the WAL receiver, else the last checkpoint.
SAMPLE_QUERY = (
    "SELECT pg_is_in_recovery(), "
    "CASE WHEN pg_is_in_recovery() THEN coalesce("
    "(SELECT received_tli FROM pg_stat_wal_receiver), "
    "(pg_control_checkpoint()).timeline_id) "
    "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END"
)
# For a user without the rights the timeline query needs.
SAMPLE_QUERY_PLAIN = "SELECT pg_is_in_recovery(), NULL::int"


@dataclass
class Member:
    name: str
    host: str
    port: int = 5432

    def conninfo(self, dbname: str, user: str, connect_timeout_s: int = 2) -> str:
        return pgio.psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            dbname=dbname,
            user=user,
            connect_timeout=connect_timeout_s,
        )


@dataclass
class Sample:
    t_start: float
    t_end: float
    state: str
    timeline: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["t_start"] = round(self.t_start, 6)
        d["t_end"] = round(self.t_end, 6)
        return d


class MemberSampler(threading.Thread):
    """Sample one member until stopped."""

    def __init__(
        self,
        name: str,
        conninfo: str,
        *,
        password: str | None = None,
        interval_s: float = 0.2,
        timeout_s: float = 1.0,
        clock: Clock | None = None,
        application_name: str | None = None,
    ) -> None:
        super().__init__(name=f"drill-sampler-{name}", daemon=True)
        self.member = name
        self.conninfo = conninfo
        self.password = password
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.clock = clock or Clock.start()
        self.application_name = application_name or f"hastack-drill-sampler-{name}"
        self.fatal: str | None = None
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._conn: Any = None
        self._query = SAMPLE_QUERY

    def stop(self) -> None:
        self._stop_event.set()

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def run(self) -> None:
        next_t = self.clock.now()
        try:
            while not self._stop_event.is_set():
                self.sample_once()
                next_t += self.interval_s
                now = self.clock.now()
                if next_t < now:
                    next_t = now
                self._stop_event.wait(next_t - now)
        except Exception as ex:  # a bug here must end the drill loudly, not silently
            self.fatal = f"{type(ex).__name__}: {ex}"
        finally:
            pgio.drop(self._conn)
            self._conn = None

    def sample_once(self) -> Sample:
        """One sample: (re)connect if needed, ask, classify, record."""
        sample = self._sample()
        with self._lock:
            self._samples.append(sample)
        return sample

    def _sample(self) -> Sample:
        t_start = self.clock.now()
        if self._conn is None:
            try:
                self._conn = pgio.connect(self.conninfo, password=self.password, application_name=self.application_name)
            except pgio.psycopg.Error as ex:
                return Sample(t_start, self.clock.now(), "unknown", error=pgio.short_error(ex))
        try:
            rows = pgio.execute(self._conn, self._query, timeout_s=self.timeout_s).rows
        except pgio.PgQueryError as ex:
            if ex.server_error and self._query is SAMPLE_QUERY and ex.sqlstate == "42501":
                self._query = SAMPLE_QUERY_PLAIN  # no right to read the timeline: state only
            self._drop()
            return Sample(t_start, self.clock.now(), "unknown", error=pgio.short_error(ex))
        t_end = self.clock.now()
        in_recovery, timeline = rows[0]
        state = "replica" if in_recovery == "t" else "primary"
        return Sample(t_start, t_end, state, int(timeline) if timeline is not None else None)

    def _drop(self) -> None:
        pgio.drop(self._conn)
        self._conn = None


class ClusterSampler:
    """One :class:`MemberSampler` per member, started and stopped together."""

    def __init__(
        self,
        members: list[Member],
        *,
        dbname: str,
        user: str,
        password: str | None = None,
        interval_s: float = 0.2,
        timeout_s: float = 1.0,
        connect_timeout_s: int = 2,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or Clock.start()
        self.samplers = [
            MemberSampler(
                m.name,
                m.conninfo(dbname, user, connect_timeout_s),
                password=password,
                interval_s=interval_s,
                timeout_s=timeout_s,
                clock=self.clock,
            )
            for m in members
        ]

    def start(self) -> None:
        for s in self.samplers:
            s.start()

    def stop(self, join_timeout_s: float = 10.0) -> list[str]:
        """Stop every lane; return the names of lanes still stuck after the timeout."""
        for s in self.samplers:
            s.stop()
        stuck = []
        for s in self.samplers:
            s.join(join_timeout_s)
            if s.is_alive():
                stuck.append(s.member)
        return stuck

    def samples(self) -> dict[str, list[Sample]]:
        return {s.member: s.samples() for s in self.samplers}

    def fatal(self) -> dict[str, str]:
        return {s.member: s.fatal for s in self.samplers if s.fatal}

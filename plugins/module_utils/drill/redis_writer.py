"""The Redis drill writer: one write every ~20 ms to the master the sentinels name.

The client does what a Sentinel-aware application does (redis-py's
``Sentinel(...).master_for``): ask the sentinels ``SENTINEL
GET-MASTER-ADDR-BY-NAME``, connect to that address, check with ``ROLE`` that it
is a master, and write; after any error or timeout drop the connection and
discover the master again, starting with the next sentinel (unlike redis-py,
which asks the last one that answered first: a sentinel cut off with the old
master keeps naming it). Each write is ``RPUSH <list of the run> <id>``, so
the read-back is one ``LRANGE`` on the final master.

Each attempt gets its own id and ends in one of three outcomes, exactly as in
``pg_writer``:

``ack``
    the master answered the ``RPUSH`` with the new length of the list.
``error``
    the write certainly did not happen: no sentinel named a master, no
    connection, the server is not a master, or it answered with an error
    reply (``READONLY``, ``NOREPLICAS``, ``LOADING``, ...).
``unknown``
    the command was sent but no answer came back within ``write_timeout_s``
    or the connection broke while waiting (a frozen master, a client killed by
    a failover). Not acknowledged.

The attempt records the address of the server that acknowledged (``server``);
``timeline`` stays ``None`` (Redis has no timeline).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.hastack.ha.plugins.module_utils.drill.clock import Clock
from ansible_collections.hastack.ha.plugins.module_utils.drill.pg_writer import WriteAttempt
from ansible_collections.hastack.ha.plugins.module_utils.redis_sentinel import (
    Credentials,
    Endpoint,
    RedisError,
    RedisReplyError,
    RespConnection,
    parse_role,
)

KEY_PREFIX = "hastack:drill:"


def run_key(run_id: str) -> str:
    """The list that holds the ids of one run."""
    return f"{KEY_PREFIX}{run_id}"


@dataclass(frozen=True)
class SentinelTarget:
    """Where to ask for the master: the sentinels, the name they monitor, the credentials."""

    sentinels: tuple[Endpoint, ...]
    master_name: str
    redis_credentials: Credentials = field(default_factory=Credentials)
    sentinel_credentials: Credentials = field(default_factory=Credentials)


def short_error(ex: Exception) -> str:
    text = str(ex) or type(ex).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def discover_master(target: SentinelTarget, timeout_s: float, start: int = 0) -> tuple[str, int, int]:
    """Ask the sentinels in turn (from index ``start``) for the master's address.

    Returns ``(host, port, index of the sentinel that answered)``; raises
    ``RedisError`` naming every sentinel's reason when none gives an address.
    """
    reasons = []
    count = len(target.sentinels)
    for k in range(count):
        index = (start + k) % count
        s = target.sentinels[index]
        try:
            with RespConnection(
                s.host,
                s.port,
                timeout_s,
                target.sentinel_credentials.password,
                target.sentinel_credentials.username,
            ) as conn:
                reply = conn.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", target.master_name)
        except RedisError as ex:
            reasons.append(f"sentinel {s.label}: {ex.reason}")
            continue
        if isinstance(reply, list) and len(reply) == 2 and reply[0] and reply[1]:
            return str(reply[0]), int(reply[1]), index
        reasons.append(f"sentinel {s.label}: no master named '{target.master_name}'")
    raise RedisError("sentinels", "; ".join(reasons) or "no sentinel given")


def connect_master(target: SentinelTarget, host: str, port: int, timeout_s: float) -> RespConnection:
    """Connect to ``host:port`` and check it is a master (raises ``RedisError``)."""
    creds = target.redis_credentials
    conn = RespConnection(host, port, timeout_s, creds.password, creds.username)
    conn.connect()
    try:
        role = parse_role(conn.command("ROLE"))
    except (RedisError, ValueError) as ex:
        conn.close()
        if isinstance(ex, RedisError):
            raise
        raise RedisError(conn.address, f"unexpected ROLE answer: {ex}") from ex
    if role["role"] != "master":
        conn.close()
        raise RedisError(conn.address, f"the sentinels name it master but it says {role['role']}")
    return conn


class RedisWriter(threading.Thread):
    """``RPUSH`` an id every ``interval_s`` to the sentinels' master; record every attempt."""

    def __init__(
        self,
        target: SentinelTarget,
        run_id: str,
        *,
        interval_s: float = 0.02,
        write_timeout_s: float = 1.0,
        connect_timeout_s: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name=f"drill-redis-writer-{run_id}", daemon=True)
        self.target = target
        self.run_id = run_id
        self.key = run_key(run_id)
        self.interval_s = interval_s
        self.write_timeout_s = write_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.clock = clock or Clock.start()
        self.t_started: float | None = None
        self.t_stopped: float | None = None
        self.fatal: str | None = None
        self._attempts: list[WriteAttempt] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._conn: RespConnection | None = None
        self._server: str | None = None
        self._sentinel_index = 0
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
                if next_t < now:  # late (rediscovery, timeout): do not burst to catch up
                    next_t = now
                self._stop_event.wait(next_t - now)
        except Exception as ex:  # a bug here must end the drill loudly, not silently
            self.fatal = f"{type(ex).__name__}: {ex}"
        finally:
            self._drop()
            self.t_stopped = self.clock.now()

    def write_once(self) -> WriteAttempt:
        """One attempt: discover and connect if needed, write, classify, record."""
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
                host, port, index = discover_master(self.target, self.connect_timeout_s, self._sentinel_index)
                self._sentinel_index = index
                # One bound for the connect, AUTH, ROLE and every write.
                self._conn = connect_master(self.target, host, port, self.write_timeout_s)
                self._server = host
            except RedisError as ex:
                self._drop()
                return WriteAttempt(wid, t_start, self.clock.now(), "error", error=short_error(ex), phase="connect")
        server = self._server
        try:
            reply = self._conn.command("RPUSH", self.key, str(wid))
        except RedisReplyError as ex:
            # The server refused it (READONLY, NOREPLICAS, ...): not written.
            self._drop()
            return WriteAttempt(wid, t_start, self.clock.now(), "error", server, error=short_error(ex))
        except RedisError as ex:
            # Sent, no clean answer (timeout, connection closed): maybe written.
            self._drop()
            return WriteAttempt(wid, t_start, self.clock.now(), "unknown", server, error=short_error(ex))
        t_end = self.clock.now()
        if not isinstance(reply, int):
            self._drop()
            return WriteAttempt(wid, t_start, t_end, "unknown", server, error=f"unexpected RPUSH answer {reply!r:.60}")
        return WriteAttempt(wid, t_start, t_end, "ack", server)

    def _drop(self) -> None:
        """Drop the connection; the next discovery starts with the next sentinel.

        The sentinel that named a master which then failed may be the one that
        is wrong: a sentinel cut off with the old master still names it (and
        that master, reachable for a client, refuses writes with NOREPLICAS).
        A client that always asked it first would never find the new master.
        """
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._server = None
        self._sentinel_index = (self._sentinel_index + 1) % max(1, len(self.target.sentinels))


def read_back_ids(target: SentinelTarget, run_id: str, timeout_s: float = 5.0) -> tuple[list[int], str]:
    """Every id of ``run_id`` on the master the sentinels name now, and its address."""
    host, port, _ = discover_master(target, timeout_s)
    conn = connect_master(target, host, port, timeout_s)
    try:
        values: Any = conn.command("LRANGE", run_key(run_id), 0, -1)
        # Keep the list a day for a look by hand, then let Redis drop it.
        conn.command("EXPIRE", run_key(run_id), 86400)
    finally:
        conn.close()
    return sorted(int(v) for v in values or []), host

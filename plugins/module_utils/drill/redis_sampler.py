"""Who accepts writes in Redis: every member sampled on its own, every ~200 ms.

One thread per member, each with its own connection, so a frozen member stalls
only its own lane. A sample (same shape as ``pg_sampler``'s) is

``primary``  ``ROLE`` says master and the master takes writes: it has at least
             ``min-replicas-to-write`` good replicas (``INFO replication``
             ``min_slaves_good_slaves``), or that guard is off
``replica``  ``ROLE`` says slave
``unknown``  no answer within the timeout, no connection, or a master that
             refuses writes for want of good replicas (an isolated old master
             fenced by ``min-replicas-to-write``): *not* writable; ``error``
             says which

``timeline`` stays ``None`` (Redis has none).
"""

from __future__ import annotations

import threading
from typing import Any

from ansible_collections.hastack.ha.plugins.module_utils.drill.clock import Clock
from ansible_collections.hastack.ha.plugins.module_utils.drill.pg_sampler import Sample
from ansible_collections.hastack.ha.plugins.module_utils.drill.redis_writer import short_error
from ansible_collections.hastack.ha.plugins.module_utils.redis_sentinel import (
    Credentials,
    Endpoint,
    RedisError,
    RedisReplyError,
    RespConnection,
    parse_info,
    parse_int,
    parse_role,
)

STATES = ("primary", "replica", "unknown")


def classify(role: dict[str, Any], info: dict[str, str], min_replicas: int | None) -> tuple[str, str | None]:
    """State of a member from its ``ROLE`` and ``INFO replication`` answers."""
    if role["role"] == "slave":
        return "replica", None
    if role["role"] != "master":
        return "unknown", f"role {role['role']}"
    good = parse_int(info.get("min_slaves_good_slaves"))
    if min_replicas and good is not None and good < min_replicas:
        return "unknown", f"master refusing writes: {good} good replica(s) < min-replicas-to-write {min_replicas}"
    return "primary", None


class RedisMemberSampler(threading.Thread):
    """Sample one Redis until stopped."""

    def __init__(
        self,
        endpoint: Endpoint,
        credentials: Credentials,
        *,
        interval_s: float = 0.2,
        timeout_s: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(name=f"drill-redis-sampler-{endpoint.label}", daemon=True)
        self.member = endpoint.label
        self.endpoint = endpoint
        self.credentials = credentials
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.clock = clock or Clock.start()
        self.fatal: str | None = None
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._conn: RespConnection | None = None
        self._min_replicas: int | None = None

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
            self._drop()

    def sample_once(self) -> Sample:
        """One sample: (re)connect if needed, ask, classify, record."""
        sample = self._sample()
        with self._lock:
            self._samples.append(sample)
        return sample

    def _sample(self) -> Sample:
        t_start = self.clock.now()
        try:
            if self._conn is None:
                conn = RespConnection(
                    self.endpoint.host,
                    self.endpoint.port,
                    self.timeout_s,
                    self.credentials.password,
                    self.credentials.username,
                )
                conn.connect()
                self._conn = conn
                self._min_replicas = self._read_min_replicas(conn)
            role = parse_role(self._conn.command("ROLE"))
            info = parse_info(self._conn.command("INFO", "replication")) if role["role"] == "master" else {}
        except (RedisError, ValueError) as ex:
            self._drop()
            return Sample(t_start, self.clock.now(), "unknown", error=short_error(ex))
        t_end = self.clock.now()
        state, error = classify(role, info, self._min_replicas)
        return Sample(t_start, t_end, state, None, error)

    @staticmethod
    def _read_min_replicas(conn: RespConnection) -> int | None:
        """``min-replicas-to-write`` of the member, or None when CONFIG is not allowed."""
        try:
            reply = conn.command("CONFIG", "GET", "min-replicas-to-write")
        except RedisReplyError:  # CONFIG refused (ACL, renamed): state by ROLE alone
            return None
        if isinstance(reply, list) and len(reply) == 2:
            return parse_int(reply[1])
        return None

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None


class RedisClusterSampler:
    """One :class:`RedisMemberSampler` per member, started and stopped together."""

    def __init__(
        self,
        members: list[Endpoint],
        credentials: Credentials,
        *,
        interval_s: float = 0.2,
        timeout_s: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or Clock.start()
        self.samplers = [
            RedisMemberSampler(m, credentials, interval_s=interval_s, timeout_s=timeout_s, clock=self.clock)
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

"""Prometheus metrics, on a registry of the app's own (one per app object).

Every metric of the app is named ``hastack_app_*``; the process and Python
collectors keep their standard names (``process_start_time_seconds``,
``process_resident_memory_bytes``, ``process_open_fds``, ``python_gc_*``,
``python_info``), as every exporter does.

Names the alert rules use: ``hastack_app_http_request_duration_seconds``
(histogram, so ``..._bucket``) and ``hastack_app_http_requests_total``, both
with ``method``, ``route`` (the route template, ``unmatched`` for none) and
``status`` (the HTTP status code).

Connection pools are read at scrape time (``watch_pool``,
``watch_redis_pool``): a scrape sees the pools as they are, not as the last
request left them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from .breaker import State

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PREFIX = "hastack_app"

log = logging.getLogger("hastack_app.metrics")


class StatsPool(Protocol):
    """psycopg_pool's (Async)ConnectionPool, as far as the metrics read it."""

    def get_stats(self) -> dict[str, int]: ...


class CountedPool(Protocol):
    """redis-py's (asyncio) ConnectionPool, as far as the metrics read it."""

    max_connections: int

    def get_connection_count(self) -> list[tuple[int, dict[str, Any]]]: ...


class PoolCollector(Collector):
    """Connection pool gauges, read from the pools at scrape time.

    PostgreSQL (psycopg_pool ``get_stats()``): connections open (``size``),
    handed out (``in_use`` = open - available), requests waiting for one, and
    the configured maximum. Redis (redis-py ``get_connection_count()``): open
    and in use, and the maximum (redis-py does not queue: a full pool refuses
    at once, which the app turns into back-pressure).
    """

    def __init__(self) -> None:
        self.db: dict[str, StatsPool] = {}
        self.redis: dict[str, CountedPool] = {}

    # (metric name after the prefix, help, reader of one pool's numbers)
    DB_GAUGES: tuple[tuple[str, str, Callable[[dict[str, int]], int]], ...] = (
        ("db_pool_connections", "PostgreSQL connections the pool holds open.", lambda s: s.get("pool_size", 0)),
        (
            "db_pool_connections_in_use",
            "PostgreSQL connections handed to requests.",
            lambda s: s.get("pool_size", 0) - s.get("pool_available", 0),
        ),
        ("db_pool_requests_waiting", "Requests waiting for a connection.", lambda s: s.get("requests_waiting", 0)),
        ("db_pool_connections_max", "Most PostgreSQL connections the pool may open.", lambda s: s.get("pool_max", 0)),
    )
    REDIS_GAUGES: tuple[tuple[str, str, Callable[[dict[str, int]], int]], ...] = (
        ("redis_pool_connections", "Redis connections the pool holds open.", lambda c: c["idle"] + c["used"]),
        ("redis_pool_connections_in_use", "Redis connections handed to requests.", lambda c: c["used"]),
        ("redis_pool_connections_max", "Most Redis connections the pool may open.", lambda c: c["max"]),
    )

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.DB_GAUGES, {name: self._db_stats(pool) for name, pool in self.db.items()})
        yield from self._families(self.REDIS_GAUGES, {name: self._redis_counts(p) for name, p in self.redis.items()})

    @staticmethod
    def _db_stats(pool: StatsPool) -> dict[str, int] | None:
        try:
            return pool.get_stats()
        except Exception:  # a scrape must not fail for one pool
            log.exception("reading the stats of a database pool failed")
            return None

    @staticmethod
    def _redis_counts(pool: CountedPool) -> dict[str, int] | None:
        try:
            counts = {attrs.get("db.client.connection.state"): n for n, attrs in pool.get_connection_count()}
            return {"idle": counts.get("idle", 0), "used": counts.get("used", 0), "max": pool.max_connections}
        except Exception:
            log.exception("reading the counts of a Redis pool failed")
            return None

    @staticmethod
    def _families(
        gauges: tuple[tuple[str, str, Callable[[dict[str, int]], int]], ...], numbers: dict[str, dict[str, int] | None]
    ) -> Iterator[Metric]:
        for suffix, help_text, read in gauges:
            family = GaugeMetricFamily(f"{PREFIX}_{suffix}", help_text, labels=["pool"])
            for name, values in sorted(numbers.items()):
                if values is not None:
                    family.add_metric([name], read(values))
            yield family


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # what the default registry has: process (start time, RSS, fds, CPU), platform, GC
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.pools = PoolCollector()
        self.registry.register(self.pools)
        self.request_duration = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "HTTP request duration in seconds, by method, route template and status.",
            ["method", "route", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            f"{PREFIX}_http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.breaker_state = Gauge(
            f"{PREFIX}_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["breaker"],
            registry=self.registry,
        )
        self.breaker_transitions = Counter(
            f"{PREFIX}_circuit_breaker_transitions_total",
            "Circuit breaker state changes, by the state entered.",
            ["breaker", "state"],
            registry=self.registry,
        )
        self.breaker_rejections = Counter(
            f"{PREFIX}_circuit_breaker_rejections_total",
            "Calls the circuit breaker refused without trying them (open, or half-open with its probe out).",
            ["breaker"],
            registry=self.registry,
        )
        self.cache_hits = Counter(
            f"{PREFIX}_cache_hits_total", "Cache hits, by tier (local, redis).", ["tier"], registry=self.registry
        )
        self.cache_misses = Counter(
            f"{PREFIX}_cache_misses_total", "Cache misses, by tier (local, redis).", ["tier"], registry=self.registry
        )
        self.ready_check = Gauge(
            f"{PREFIX}_readiness_check_ok", "1 when the readiness check passed at its last run.", ["check"],
            registry=self.registry,
        )  # fmt: skip

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.request_duration.labels(method, route, str(status)).observe(seconds)
        self.requests.labels(method, route, str(status)).inc()

    def breaker_changed(self, name: str, state: State) -> None:
        self.breaker_state.labels(name).set(int(state))
        self.breaker_transitions.labels(name, state.name).inc()

    def breaker_rejected(self, name: str) -> None:
        self.breaker_rejections.labels(name).inc()

    def cache_hit(self, tier: str) -> None:
        self.cache_hits.labels(tier).inc()

    def cache_miss(self, tier: str) -> None:
        self.cache_misses.labels(tier).inc()

    def watch_pool(self, name: str, pool: StatsPool) -> None:
        """Export a psycopg_pool pool's size, in-use and waiting counts, labelled ``pool=name``."""
        if name in self.pools.db:
            raise ValueError(f"database pool {name!r} is already watched; give each pool its own name")
        self.pools.db[name] = pool

    def watch_redis_pool(self, name: str, pool: CountedPool) -> None:
        """Export a redis-py pool's open and in-use counts, labelled ``pool=name``."""
        if name in self.pools.redis:
            raise ValueError(f"Redis pool {name!r} is already watched; give each pool its own name")
        self.pools.redis[name] = pool

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Prometheus metrics, on a registry of the app's own (one per app object).

Names the alert rules use: ``http_request_duration_seconds`` (histogram, so
``http_request_duration_seconds_bucket``) and ``http_requests_total`` with a
``status`` label holding the HTTP status code.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .breaker import State

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration in seconds, by method, route template and status.",
            ["method", "route", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.breaker_state = Gauge(
            "circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["breaker"],
            registry=self.registry,
        )
        self.breaker_transitions = Counter(
            "circuit_breaker_transitions_total",
            "Circuit breaker state changes, by the state entered.",
            ["breaker", "state"],
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "cache_hits_total", "Cache hits, by tier (local, redis).", ["tier"], registry=self.registry
        )
        self.cache_misses = Counter(
            "cache_misses_total", "Cache misses, by tier (local, redis).", ["tier"], registry=self.registry
        )
        self.ready_check = Gauge(
            "readiness_check_ok", "1 when the readiness check passed at its last run.", ["check"],
            registry=self.registry,
        )  # fmt: skip

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.request_duration.labels(method, route, str(status)).observe(seconds)
        self.requests.labels(method, route, str(status)).inc()

    def breaker_changed(self, name: str, state: State) -> None:
        self.breaker_state.labels(name).set(int(state))
        self.breaker_transitions.labels(name, state.name).inc()

    def cache_hit(self, tier: str) -> None:
        self.cache_hits.labels(tier).inc()

    def cache_miss(self, tier: str) -> None:
        self.cache_misses.labels(tier).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""The cache in-process, against a fresh Redis master + replica + Sentinel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hastack_app.breaker import CircuitBreaker
from hastack_app.cache import CACHE_FAILURES, Cache
from hastack_app.config import BreakerSettings
from hastack_app.metrics import Metrics


def make_cache(app_config: Callable[..., Any], redis_lab: Any, **overrides: str) -> Cache:
    host, port = redis_lab.address("sentinel")
    config = app_config(
        REDIS_SENTINELS=f"{host}:{port}", REDIS_MASTER_NAME=redis_lab.master_name,
        REDIS_PASSWORD=redis_lab.password, REDIS_SENTINEL_PASSWORD=redis_lab.sentinel_password, **overrides,
    )  # fmt: skip
    breaker = CircuitBreaker("cache", BreakerSettings(5, 60.0, 2), failure_types=CACHE_FAILURES)
    return Cache(config, breaker, Metrics())


def test_a_full_redis_pool_is_a_miss_not_a_cache_failure(app_config, redis_lab) -> None:
    """More reads at once than the pool has connections: the ones that find it
    full are misses (the caller reads PostgreSQL), and the cache breaker stays
    closed. redis-py raised MaxConnectionsError at once, a RedisError, so a
    burst of load (above 50 requests in flight, against HAProxy's 200) opened it."""

    async def scenario() -> tuple[list[Any], str]:
        cache = make_cache(app_config, redis_lab, REDIS_POOL_MAX="2")
        try:
            results = await asyncio.gather(*(cache.get(f"item:{i}") for i in range(60)))
            return list(results), cache.breaker.state.name
        finally:
            await cache.close()

    results, state = asyncio.run(scenario())
    assert results == [None] * 60
    assert state == "CLOSED"

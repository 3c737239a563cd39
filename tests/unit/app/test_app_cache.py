"""The cache in-process, against a fresh Redis master + replica + Sentinel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from hastack_app.breaker import CircuitBreaker
from hastack_app.cache import CACHE_FAILURES, Cache, PendingKeys
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


class LaggingReplica:
    """A replica that has not applied the last write yet: it answers the old value."""

    def __init__(self, raw: str) -> None:
        self.raw = raw

    async def get(self, key: str) -> str:
        return self.raw


async def two_subscribed(app_config: Callable[..., Any], redis_lab: Any) -> tuple[Cache, Cache]:
    """This instance and another one, both listening for invalidations."""
    here, other = (
        make_cache(app_config, redis_lab, INSTANCE="here"),
        make_cache(app_config, redis_lab, INSTANCE="other"),
    )
    for cache in (here, other):
        await cache.start()
    for _ in range(100):
        if here.subscribed and other.subscribed:
            break
        await asyncio.sleep(0.05)
    assert here.subscribed and other.subscribed
    return here, other


async def invalidated(cache: Cache, before: int) -> None:
    for _ in range(100):
        if cache.invalidations_received > before:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the invalidation never arrived")


async def first_value(cache: Cache, key: str) -> Any:
    """The first value the cache serves for key, once the replica has caught up
    (within milliseconds; seconds on a loaded box). Until then a miss, never v1."""
    seen = []
    for _ in range(100):
        seen.append(await cache.get(key))
        if seen[-1] is not None:
            break
        await asyncio.sleep(0.05)
    assert all(value is None or value["version"] == 2 for value in seen), seen
    return seen[-1]


ROW1 = {"id": 1, "name": "v1", "data": {}, "version": 1}
ROW2 = {"id": 1, "name": "v2", "data": {}, "version": 2}


def test_a_lagging_replica_after_an_invalidation_does_not_refill_the_local_tier(app_config, redis_lab) -> None:
    """The other instance writes v2 and its invalidation arrives here; then a read
    meets a replica that still has v1. v1 must not go into the local tier (it
    stayed there for the local TTL, 30 s by default, after the replica caught up)."""

    async def scenario() -> tuple[Any, Any]:
        here, other = await two_subscribed(app_config, redis_lab)
        try:
            await other.write("item:1", ROW1)
            before = here.invalidations_received
            await other.write("item:1", ROW2)
            await invalidated(here, before)
            real = here.replica
            here.replica = LaggingReplica(json.dumps(ROW1))
            during = await here.get("item:1")
            here.replica = real
            return during, await first_value(here, "item:1")
        finally:
            await here.close()
            await other.close()

    during, after = asyncio.run(scenario())
    assert during is None  # older than the invalidation said: a miss, the database answers
    assert after["version"] == 2, after


def test_a_refill_that_lost_to_a_write_is_not_kept_locally(app_config, redis_lab) -> None:
    """A read here missed and got v1 from PostgreSQL; before it fills the cache the
    other instance writes v2 (to PostgreSQL, then Redis, with an invalidation).
    The fill's SET NX loses: v1 must not be in the local tier either."""

    async def scenario() -> Any:
        here, other = await two_subscribed(app_config, redis_lab)
        try:
            before = here.invalidations_received
            await other.write("item:1", ROW2)
            await invalidated(here, before)
            await here.fill("item:1", ROW1)  # what this instance read before the write
            return await first_value(here, "item:1")
        finally:
            await here.close()
            await other.close()

    assert asyncio.run(scenario())["version"] == 2


def test_pending_invalidations_survive_a_restart(app_config, redis_lab, tmp_path) -> None:
    """A write while Redis is unreachable queues its key; the instance restarts
    before Redis is back. The new instance still deletes the stale value once
    it reaches Redis. Kept in memory only, the key was forgotten, and Redis
    served the old value for up to its TTL (an hour)."""

    async def scenario() -> tuple[Any, list[str], bool]:
        first = make_cache(app_config, redis_lab, INSTANCE="a")
        await first.master.set("item:1", json.dumps(ROW1), ex=3600)  # what Redis holds: v1
        await first.close()

        # the same instance, Redis unreachable (the default sentinel is a dead address)
        cut_off = Cache(
            app_config(INSTANCE="a"),
            CircuitBreaker("cache", BreakerSettings(5, 60.0, 2), failure_types=CACHE_FAILURES),
            Metrics(),
        )
        await cut_off.write("item:1", ROW2)  # the database has v2; Redis could not be told
        await cut_off.close()
        queued = json.loads((tmp_path / "pending-invalidations-a.json").read_text())

        restarted = make_cache(app_config, redis_lab, INSTANCE="a")
        await restarted.start()
        try:
            for _ in range(200):
                if not restarted._pending:
                    break
                await asyncio.sleep(0.05)
            return await restarted.master.get("item:1"), queued, (tmp_path / "pending-invalidations-a.json").exists()
        finally:
            await restarted.close()

    stale, queued, file_left = asyncio.run(scenario())
    assert queued == ["item:1"]
    assert stale is None, f"Redis still serves {stale!r} after the restart"
    assert not file_left


def test_an_unreadable_pending_file_is_set_aside(tmp_path) -> None:
    path = tmp_path / "pending-invalidations-a.json"
    path.write_text("{not json")
    pending = PendingKeys(path)
    assert not pending
    assert (tmp_path / "pending-invalidations-a.json.unreadable").read_text() == "{not json"
    pending.add("item:7")
    assert json.loads(path.read_text()) == ["item:7"]
    pending.difference_update(["item:7"])
    assert not path.exists()

"""Two-tier cache: a small in-process tier in front of Redis behind Sentinel.

- Redis: the master (found through Sentinel) takes the writes, the replicas
  serve the reads (round robin, the master when no replica answers); pooled
  connections; every entry has a TTL (1 h by default).
- Writes are write-through: create/update SET the new value, delete SETs a
  tombstone; a read that missed populates with SET NX, so it can never
  overwrite a newer value written meanwhile.
- The local tier is invalidated across app instances through Redis pub/sub:
  each write publishes the key. The subscriber reconnects after a failover
  (it compares its connection with the master Sentinel names every few
  seconds, which also catches a frozen master), and clears the local tier on
  every (re)subscription since messages may have been lost; while it is not
  subscribed the local tier is bypassed. Local TTLs bound staleness when a
  message is lost anyway.
- The local tier only takes a value known to be current: an invalidation
  carries the version written (a row's ``version``; a delete is final), and
  a value older than the last version heard of for its key is neither kept
  locally nor served (a replica that has not applied that write yet: a
  miss, the database answers). A refill is kept locally only once its SET NX
  succeeded; when it lost, a write got there first.
- Everything runs under the cache breaker; when it is open, or Redis fails,
  callers fall back to the database. A write whose Redis update failed is
  remembered and re-applied (as a delete) once Redis answers again. The keys
  waiting for that are kept in a file under the storage path
  (``PendingKeys``), so a restart during a Redis outage does not forget
  them: Redis would otherwise serve the old values for up to their TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import MaxConnectionsError, RedisError

from .breaker import CircuitBreaker, CircuitOpenError, Saturated
from .config import Config
from .metrics import Metrics

log = logging.getLogger("hastack_app.cache")

CACHE_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
# What a caller treats as "no cache now": it reads or writes the database alone.
CACHE_UNAVAILABLE: tuple[type[BaseException], ...] = (CircuitOpenError, Saturated, *CACHE_FAILURES)
TOMBSTONE = {"deleted": True}
T = TypeVar("T")


def version_of(value: Any) -> float:
    """How new a cached value is: a row's version; a tombstone is final (ids are never reused)."""
    if value == TOMBSTONE:
        return math.inf
    version = value.get("version") if isinstance(value, dict) else None
    return float(version) if isinstance(version, int) else 0.0


class LocalTier:
    """A bounded LRU with per-entry expiry (monotonic clock)."""

    def __init__(self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self.clock = clock
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str) -> Any | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return entry[1]

    def put(self, key: str, value: Any) -> None:
        if self.size <= 0 or self.ttl_s <= 0:
            return
        self._data[key] = (self.clock() + self.ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def drop(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class Floors:
    """Per key, the newest version an invalidation announced (bounded LRU: a
    forgotten floor only lets the local TTL bound staleness again)."""

    def __init__(self, size: int) -> None:
        self.size = max(size, 1)
        self._data: OrderedDict[str, float] = OrderedDict()

    def raise_to(self, key: str, version: float) -> None:
        self._data[key] = max(version, self._data.get(key, 0.0))
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def current(self, key: str, value: Any) -> bool:
        return version_of(value) >= self._data.get(key, 0.0)


class PendingKeys:
    """Keys whose invalidation has not reached Redis yet, kept in a file.

    A database write whose Redis update failed leaves Redis with the old
    value for up to the cache TTL; its key waits here until a delete reaches
    the master. The file (a JSON list) is rewritten on every change through
    a temporary file, fsync and rename, so a crash leaves the old set or the
    new one, never a torn file; it is removed once nothing is pending. A file
    that cannot be read at start is reported and set aside (renamed with
    ``.unreadable``), and the instance starts with nothing pending.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: set[str] = set()
        try:
            loaded = json.loads(path.read_text())
            if not isinstance(loaded, list) or not all(isinstance(k, str) for k in loaded):
                raise ValueError("not a list of keys")
            self._keys = set(loaded)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.error(
                "pending cache invalidations unreadable; set aside", extra={"path": str(path), "error": repr(exc)}
            )
            with contextlib.suppress(OSError):
                path.replace(path.with_name(path.name + ".unreadable"))
        if self._keys:
            log.warning("cache invalidations pending from before the start", extra={"count": len(self._keys)})

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._keys))

    def add(self, key: str) -> None:
        if key not in self._keys:
            self._keys.add(key)
            self._save()

    def difference_update(self, keys: Iterable[str]) -> None:
        before = len(self._keys)
        self._keys.difference_update(keys)
        if len(self._keys) != before:
            self._save()

    def _save(self) -> None:
        try:
            if not self._keys:
                self.path.unlink(missing_ok=True)
                return
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            with open(tmp, "w") as f:
                json.dump(sorted(self._keys), f)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)
        except OSError as exc:  # the storage check of /ready reports the directory itself
            log.error("cannot keep pending cache invalidations", extra={"path": str(self.path), "error": repr(exc)})


def invalidation(key: str, origin: str, value: Any) -> str:
    """The pub/sub message of a write: the key and the version written."""
    deleted = math.isinf(version := version_of(value))
    return json.dumps({"key": key, "origin": origin, "version": None if deleted else version, "deleted": deleted})


class Cache:
    def __init__(self, config: Config, breaker: CircuitBreaker, metrics: Metrics) -> None:
        self.config = config
        self.breaker = breaker
        self.metrics = metrics
        self.ttl_s = config.cache_ttl_s
        self.timeout = config.redis_timeout_s
        self.channel = f"hastack-app:{config.redis_master_name}:invalidate"
        self.origin = f"{config.instance}-{uuid.uuid4().hex[:8]}"
        self.local = LocalTier(config.local_cache_size, config.local_cache_ttl_s)
        self.floors = Floors(config.local_cache_size)
        self.subscribed = False
        self.subscribed_to: str | None = None
        self.resubscriptions = 0
        self.invalidations_received = 0
        self._pending = PendingKeys(config.storage_path / f"pending-invalidations-{config.instance}.json")
        self._closing = False
        self._listener: asyncio.Task[None] | None = None
        conn = {
            "password": config.redis_password,
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            # one immediate retry: a pooled connection to a dead master reconnects
            # through Sentinel at once; the breaker and the timeouts do the rest
            "retry": Retry(NoBackoff(), 1),
            "health_check_interval": 10,
        }
        self.sentinel = Sentinel(
            [(e.host, e.port) for e in config.redis_sentinels],
            sentinel_kwargs={
                "password": config.redis_sentinel_password,
                "socket_timeout": self.timeout,
                "socket_connect_timeout": self.timeout,
                # No retry per sentinel: the next sentinel is the retry. redis-py
                # retries a refused connection 3 times with backoff (about 3.7 s
                # in 8.1), longer than every budget here, so with the first
                # sentinel of the list down (its zone lost) discovery was
                # cancelled before it reached the second, every time, and the
                # cache stayed down for as long as that sentinel (zone drill).
                "retry": Retry(NoBackoff(), 0),
            },
            **conn,
        )
        # A full pool raises MaxConnectionsError at once; _guarded makes it
        # Saturated (a miss, not a breaker failure). The master's pool has two
        # more: the invalidation listener's and the readiness probe's.
        self.master: Redis = self.sentinel.master_for(
            config.redis_master_name, max_connections=config.redis_pool_max + 2
        )
        self.replica: Redis = self.sentinel.slave_for(config.redis_master_name, max_connections=config.redis_pool_max)

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="cache-invalidation-listener")

    async def close(self) -> None:
        self._closing = True
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        for client in (self.master, self.replica):
            with contextlib.suppress(Exception):
                await client.aclose()
        for s in self.sentinel.sentinels:
            with contextlib.suppress(Exception):
                await s.aclose()

    async def _guarded(self, op: Callable[[], Awaitable[T]], budget: float | None = None) -> T:
        """One Redis operation under the breaker and an overall timeout
        (Sentinel discovery may ask several sentinels, each with its own timeout)."""
        async with self.breaker.guard():
            try:
                return await asyncio.wait_for(op(), budget or self.timeout * 3)
            except MaxConnectionsError as exc:
                raise Saturated(
                    "cache", f"all Redis connections of this instance are busy (HASTACK_APP_REDIS_POOL_MAX): {exc}"
                ) from exc

    # -- reads ---------------------------------------------------------------
    async def get(self, key: str) -> Any | None:
        """Local tier, then a replica. None on a miss, on a Redis failure and
        while the breaker is open (the caller reads the database)."""
        if self.subscribed:
            value = self.local.get(key)
            if value is not None:
                self.metrics.cache_hit("local")
                return value
            self.metrics.cache_miss("local")
        try:
            raw = await self._guarded(lambda: self.replica.get(key))
        except (CircuitOpenError, Saturated):
            self.metrics.cache_miss("redis")
            return None
        except CACHE_FAILURES as exc:
            log.warning("cache read failed", extra={"key": key, "error": repr(exc)})
            self.metrics.cache_miss("redis")
            return None
        if raw is None:
            self.metrics.cache_miss("redis")
            return None
        value = json.loads(raw)
        if not self.floors.current(key, value):
            # a replica behind a write we heard of: let the database answer
            self.metrics.cache_miss("redis")
            return None
        self.metrics.cache_hit("redis")
        self._keep_locally(key, value)
        return value

    def _keep_locally(self, key: str, value: Any) -> None:
        if self.subscribed and self.floors.current(key, value):
            self.local.put(key, value)

    async def fill(self, key: str, value: Any) -> None:
        """After a miss: store what the database said, unless a write got there first
        (then SET NX fails, and the value is not kept locally either)."""
        stored = None
        with contextlib.suppress(*CACHE_UNAVAILABLE):
            stored = await self._guarded(lambda: self.master.set(key, json.dumps(value), ex=self.ttl_s, nx=True))
        if stored:
            self._keep_locally(key, value)

    # -- writes --------------------------------------------------------------
    async def write(self, key: str, value: Any) -> None:
        """After a database write: store the new value (or TOMBSTONE) and tell the others."""
        self.local.drop(key)
        self.floors.raise_to(key, version_of(value))
        payload = json.dumps(value)

        async def op() -> None:
            async with self.master.pipeline(transaction=False) as pipe:
                pipe.set(key, payload, ex=self.ttl_s)
                pipe.publish(self.channel, invalidation(key, self.origin, value))
                await pipe.execute()

        try:
            await self._guarded(op)
        except CACHE_UNAVAILABLE as exc:
            # Redis may keep the old value: delete it once Redis answers again
            self._pending.add(key)
            log.warning("cache write failed; key queued for invalidation", extra={"key": key, "error": repr(exc)})

    async def _flush_pending(self) -> None:
        while self._pending:
            keys = list(self._pending)[:500]

            async def op(keys: list[str] = keys) -> None:
                async with self.master.pipeline(transaction=False) as pipe:
                    pipe.delete(*keys)
                    for k in keys:
                        pipe.publish(self.channel, json.dumps({"key": k, "origin": self.origin}))
                    await pipe.execute()

            await asyncio.wait_for(op(), self.timeout * 3)
            self._pending.difference_update(keys)
            log.info("queued cache invalidations applied", extra={"count": len(keys)})

    # -- invalidation listener -----------------------------------------------
    async def _master_address(self) -> str:
        host, port = await asyncio.wait_for(
            self.sentinel.discover_master(self.config.redis_master_name), self.timeout * 3
        )
        return f"{host}:{port}"

    async def _listen(self) -> None:
        backoff = 0.2
        while not self._closing:
            pubsub = self.master.pubsub()
            try:
                await asyncio.wait_for(pubsub.subscribe(self.channel), self.timeout * 3)
                conn = pubsub.connection
                self.subscribed_to = f"{conn.host}:{conn.port}" if conn else None
                # messages may have been missed while unsubscribed
                self.local.clear()
                self.subscribed = True
                self.resubscriptions += 1
                backoff = 0.2
                log.info("subscribed to cache invalidations", extra={"master": self.subscribed_to})
                await self._flush_pending()
                next_check = time.monotonic() + 2.0
                while not self._closing:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message and message.get("type") == "message":
                        self._on_message(message["data"])
                    if time.monotonic() >= next_check:
                        next_check = time.monotonic() + 2.0
                        if await self._master_address() != self.subscribed_to:
                            raise ConnectionError(f"master moved away from {self.subscribed_to}")
                        await self._flush_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: drop the local tier, resubscribe
                if self.subscribed:
                    log.warning("cache invalidation channel lost; resubscribing", extra={"error": repr(exc)})
                self.subscribed = False
                self.local.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)

    def _on_message(self, data: bytes | str) -> None:
        try:
            message = json.loads(data)
            key = message["key"]
            version = math.inf if message.get("deleted") else float(message.get("version") or 0)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("malformed invalidation message", extra={"data": repr(data)[:200]})
            return
        self.invalidations_received += 1
        self.floors.raise_to(key, version)
        self.local.drop(key)

    # -- readiness -----------------------------------------------------------
    async def ping(self, timeout: float) -> str:
        """Ask Sentinel for the master and PING it, outside the breaker."""
        address = await asyncio.wait_for(self._master_address(), timeout)
        await asyncio.wait_for(self.master.ping(), timeout)
        return address

"""Degraded reads: no primary, a standby to read from (issue 17, part 1).

A real streaming standby of the session's PostgreSQL, its replay paused so
that it is behind for certain; then the primary stops (no promotion: the
window of a failover before Patroni elects a new leader).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import throwaway_standby

STANDBY_HOST = "127.78.0.2"


@pytest.fixture
def standby(pg: Any) -> Iterator[Any]:
    with throwaway_standby(pg, "hastack-unit-app-standby-", STANDBY_HOST) as server:
        yield server


def replayed_behind(standby: Any) -> bool:
    row = standby.sql("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()")
    return bool(row[0][0])


def test_no_primary_reads_come_from_a_standby_and_never_poison_the_cache(make_app, pg, standby, redis_lab) -> None:
    hosts = f"{pg.host}:{pg.port},{standby.host}:{standby.port}"
    app = make_app("deg", DB_HOSTS=hosts, DB_TIMEOUT_S="1", LOCAL_CACHE_TTL_S="0")
    strict = make_app("deg-strict", DB_HOSTS=hosts, DB_TIMEOUT_S="1", LOCAL_CACHE_TTL_S="0", DB_READ_MAX_LAG_S="0.5")
    acked = app.client.post("/items", json={"name": "acked-v1"}).json()
    uncached = app.client.post("/items", json={"name": "b-v1"}).json()
    first = app.get(f"/items/{uncached['id']}")
    assert first.headers["X-Served-By"] == "cache", first.headers
    streaming = "SELECT count(*) FROM pg_stat_wal_receiver"
    app.wait(lambda: not replayed_behind(standby) and standby.sql(streaming)[0][0], 10, "the standby caught up")

    standby.sql("SELECT pg_wal_replay_pause()")
    assert app.client.put(f"/items/{acked['id']}", json={"name": "acked-v2"}).status_code == 200
    assert app.client.put(f"/items/{uncached['id']}", json={"name": "b-v2"}).status_code == 200
    redis_lab.ask("master", "DEL", f"item:{uncached['id']}")  # evicted: the next read misses
    app.wait(lambda: replayed_behind(standby), 10, "the standby received the writes it does not replay")
    time.sleep(1)  # its replay lag (commit time) grows past strict's 0.5 s
    pg.stop("immediate")
    try:
        ready = app.get("/ready")
        assert ready.status_code == 200, ready.text  # stays in the load balancer: it serves reads
        body = ready.json()
        assert body["status"] == "degraded" and body["checks"]["database"]["state"] == "degraded", body
        assert any("no primary" in r and STANDBY_HOST in r for r in body["reasons"]), body["reasons"]

        # the acknowledged write stays: the cache answers, not the older standby
        hit = app.get(f"/items/{acked['id']}")
        assert (hit.status_code, hit.json()["name"], hit.headers["X-Served-By"]) == (200, "acked-v2", "cache")

        # a miss is read from the standby, says so, and is not cached
        for _ in range(2):
            miss = app.get(f"/items/{uncached['id']}")
            assert miss.status_code == 200, miss.text
            assert (miss.json()["name"], miss.headers["X-Served-By"]) == ("b-v1", "standby"), miss.headers
            assert miss.headers["X-Served-By-Server"] == STANDBY_HOST
            assert float(miss.headers["X-Replica-Lag-S"]) > 0.5
        assert redis_lab.ask("master", "EXISTS", f"item:{uncached['id']}").strip().endswith(b"0")
        listed = app.get("/items")
        assert listed.status_code == 200 and listed.headers["X-Served-By"] == "standby"

        # writes fail with 503 and Retry-After
        write = app.client.post("/items", json={"name": "no-primary"})
        assert write.status_code == 503 and "Retry-After" in write.headers, write.headers

        # a standby further behind than DB_READ_MAX_LAG_S is not read
        behind = strict.get(f"/items/{uncached['id']}")
        assert behind.status_code == 503 and "HASTACK_APP_DB_READ_MAX_LAG_S" in behind.text, behind.text
        assert "Retry-After" in behind.headers
    finally:
        standby.sql("SELECT pg_wal_replay_resume()")
        if not pg.running():
            pg.start()

    # the primary back: ready, reads from it again (the newest value), writes pass
    app.wait(lambda: app.get("/ready").json()["status"] == "ready", 15, "/ready ready after the primary came back")
    # (the first reads may still come from the standby, caught up, while the pool reconnects)
    app.wait(lambda: app.get(f"/items/{uncached['id']}").headers["X-Served-By"] == "primary", 15, "a primary read")
    assert app.get(f"/items/{uncached['id']}").json()["name"] == "b-v2"
    app.wait(lambda: app.client.post("/items", json={"name": "after"}).status_code == 201, 15, "a write passing")


def test_readiness_half_opens_the_breaker_when_the_primary_is_back(make_app, pg) -> None:
    """The breaker opened during the outage; readiness reaching the primary
    again half-opens it at once, far inside recovery_s (600 s here): an
    instance back in the load balancer does not refuse writes."""
    app = make_app("agree", DB_BREAKER_RECOVERY_S="600", DB_TIMEOUT_S="1", DB_READ_POOL_MAX="0")
    pg.stop("immediate")
    try:
        for _ in range(5):
            assert app.client.post("/items", json={"name": "x"}).status_code == 503
        assert app.get("/ready").json()["checks"]["database"]["breaker"]["state"] == "OPEN"
    finally:
        pg.start()
    app.wait(lambda: app.get("/ready").status_code == 200, 15, "/ready 200")
    assert app.get("/ready").json()["checks"]["database"]["breaker"]["state"] in ("HALF_OPEN", "CLOSED")
    t0 = time.monotonic()
    app.wait(lambda: app.client.post("/items", json={"name": "back"}).status_code == 201, 5, "a write passing")
    assert time.monotonic() - t0 < 5  # not recovery_s

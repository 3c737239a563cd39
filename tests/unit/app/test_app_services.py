"""The app against real PostgreSQL and Redis/Sentinel (127.78.x.x), as processes.

Each test starts what it needs: the session's PostgreSQL (stopped and started
by the tests that need it down), a fresh Redis master + replica + Sentinel,
and one or two ``python -m hastack_app`` processes.
"""

from __future__ import annotations

import signal
import time

import httpx


def test_items_crud_cached_reads_and_metrics(make_app) -> None:
    app = make_app("crud")
    created = app.client.post("/items", json={"name": "first", "data": {"n": 1}})
    assert created.status_code == 201, created.text
    item = created.json()
    # the write went through to Redis: even the first read is a hit
    first = app.get(f"/items/{item['id']}")
    assert first.status_code == 200 and first.json() == item
    assert first.headers["X-Cache"] == "hit"
    updated = app.client.put(f"/items/{item['id']}", json={"name": "renamed", "data": {"n": 2}})
    assert updated.status_code == 200 and updated.json()["version"] == 2
    assert app.get(f"/items/{item['id']}").json()["name"] == "renamed"
    listed = app.get("/items?limit=500").json()["items"]
    assert any(i["id"] == item["id"] and i["name"] == "renamed" for i in listed)
    assert app.client.delete(f"/items/{item['id']}").status_code == 204
    assert app.get(f"/items/{item['id']}").status_code == 404
    assert app.client.delete(f"/items/{item['id']}").status_code == 404
    assert app.client.post("/items", json={"name": ""}).status_code == 422

    assert app.metric("hastack_app_http_requests_total", route="/items/{item_id}", status="200") >= 2
    assert app.metric("hastack_app_http_requests_total", method="GET", route="/items/{item_id}", status="404") == 1
    assert app.metric("hastack_app_http_request_duration_seconds_bucket", route="/items", le="+Inf") >= 2
    assert app.metric("hastack_app_cache_hits_total") >= 2
    assert app.metric("hastack_app_circuit_breaker_state", breaker="database") == 0


def test_ready_fails_while_postgres_is_down_and_recovers(make_app, pg) -> None:
    app = make_app("ready")
    body = app.get("/ready").json()
    assert body["status"] == "ready", body
    assert set(body["checks"]) == {"database", "storage", "cache"}
    assert all(c["state"] == "ok" and c["latency_ms"] >= 0 for c in body["checks"].values())

    pg.stop("immediate")
    down = app.get("/ready")
    assert down.status_code == 503, down.text
    assert down.json()["checks"]["database"]["state"] == "failed"
    assert down.json()["checks"]["storage"]["state"] == "ok"
    assert app.get("/health").status_code == 200  # liveness does not depend on PostgreSQL

    pg.start()
    app.wait(lambda: app.get("/ready").status_code == 200, 10, "/ready 200 after PostgreSQL came back")
    assert app.client.post("/items", json={"name": "after"}).status_code == 201


def test_cache_down_degrades_and_requests_are_still_served(make_app, redis_lab) -> None:
    app = make_app("degraded")
    item = app.client.post("/items", json={"name": "cached"}).json()
    for name in ("sentinel", "master", "replica"):
        redis_lab.signal(name, signal.SIGSTOP)
    try:
        ready = app.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["cache"]["state"] == "degraded"
        for _ in range(8):  # the cache breaker opens on the way; reads come from PostgreSQL
            got = app.get(f"/items/{item['id']}")
            assert got.status_code == 200 and got.json()["name"] == "cached"
        assert app.client.put(f"/items/{item['id']}", json={"name": "changed"}).status_code == 200
        assert app.get(f"/items/{item['id']}").json()["name"] == "changed"
        assert app.metric("hastack_app_circuit_breaker_state", breaker="cache") == 2
    finally:
        for name in ("sentinel", "master", "replica"):
            redis_lab.signal(name, signal.SIGCONT)


def test_invalidation_reaches_a_second_instance(make_app) -> None:
    # a long local TTL: only the pub/sub message can explain a fresh read
    a = make_app("inv-a", LOCAL_CACHE_TTL_S="600")
    b = make_app("inv-b", LOCAL_CACHE_TTL_S="600")
    b.wait(lambda: b.get("/ready").json()["cache_invalidation"]["subscribed"], 10, "subscription")
    item = a.client.post("/items", json={"name": "v1"}).json()
    assert b.get(f"/items/{item['id']}").json()["name"] == "v1"
    hits_before = b.metric("hastack_app_cache_hits_total", tier="local")
    assert b.get(f"/items/{item['id']}").json()["name"] == "v1"
    assert b.metric("hastack_app_cache_hits_total", tier="local") == hits_before + 1  # now in b's local tier

    assert a.client.put(f"/items/{item['id']}", json={"name": "v2"}).status_code == 200
    b.wait(lambda: b.get(f"/items/{item['id']}").json()["name"] == "v2", 2, "the new value on the second instance")


def test_database_breaker_opens_after_5_failures_and_closes_after_recovery(make_app, pg) -> None:
    app = make_app("breaker", DB_BREAKER_RECOVERY_S="2", DB_TIMEOUT_S="1")
    assert app.get("/items").status_code == 200
    pg.stop("immediate")
    codes = [app.get("/items").status_code for _ in range(5)]
    assert codes == [503] * 5
    assert app.metric("hastack_app_circuit_breaker_state", breaker="database") == 2
    t0 = time.monotonic()
    refused = app.get("/items")
    assert refused.status_code == 503 and "open" in refused.json()["detail"]
    assert "Retry-After" in refused.headers
    assert time.monotonic() - t0 < 0.5  # failed fast, without trying PostgreSQL
    assert app.get("/ready").json()["checks"]["database"]["breaker"]["state"] == "OPEN"

    pg.start()
    time.sleep(2.2)  # recovery_s: the next call is the half-open probe
    assert app.get("/items").status_code == 200
    assert app.metric("hastack_app_circuit_breaker_state", breaker="database") == 1  # one success of two
    assert app.get("/items").status_code == 200
    assert app.metric("hastack_app_circuit_breaker_state", breaker="database") == 0


def test_cache_follows_a_sentinel_failover_and_resubscribes(make_app, redis_lab) -> None:
    app = make_app("failover")
    before = app.get("/ready").json()["cache_invalidation"]
    assert before["master"] == "{}:{}".format(*redis_lab.address("master"))
    redis_lab.signal("master", signal.SIGKILL)
    new_master = "{}:{}".format(*redis_lab.address("replica"))
    app.wait(lambda: app.get("/ready").json()["cache_invalidation"]["master"] == new_master, 20, "resubscription")
    after = app.get("/ready").json()
    assert after["cache_invalidation"]["subscribed"] and after["cache_invalidation"]["subscriptions"] > 1
    # writes reach the new master again (the first read after a write is a Redis hit)
    app.wait(lambda: app.get("/ready").json()["checks"]["cache"]["state"] == "ok", 10, "cache ok")
    item = app.client.post("/items", json={"name": "after-failover"}).json()
    got = app.get(f"/items/{item['id']}")
    assert got.status_code == 200 and got.headers["X-Cache"] == "hit"
    assert isinstance(httpx.get(f"{app.url}/health").json()["uptime_s"], float)


def test_cache_works_while_the_first_sentinel_of_the_list_is_down(make_app, redis_lab, dead_endpoint) -> None:
    """A zone outage takes a sentinel with it; the list still names it first.
    Discovery must move on to the next sentinel within the readiness budget (1 s)
    and the cache budget (3 s), not retry the dead one (the zone drill found the
    cache down for the whole outage)."""
    host, port = redis_lab.address("sentinel")
    app = make_app("dead-sentinel", REDIS_SENTINELS=f"{dead_endpoint},{host}:{port}")
    app.wait(lambda: app.get("/ready").json()["checks"]["cache"]["state"] == "ok", 10, "cache ok")
    assert app.get("/ready").json()["status"] == "ready"
    item = app.client.post("/items", json={"name": "dead-first-sentinel"}).json()
    got = app.get(f"/items/{item['id']}")
    assert got.status_code == 200 and got.headers["X-Cache"] == "hit"

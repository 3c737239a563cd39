"""Metrics and access logs as operators expect them (issue 17, part 4).

In-process (ASGITransport) against the session's PostgreSQL; Redis is a dead
address unless a test uses the Redis lab.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hastack_app import reqctx
from hastack_app.breaker import CircuitBreaker, CircuitOpenError
from hastack_app.config import BreakerSettings
from hastack_app.logs import JsonFormatter
from hastack_app.main import create_app
from hastack_app.metrics import Metrics
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import ConnectionPool as RedisPool


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The registry as Prometheus reads it: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


# --- the registry --------------------------------------------------------------


def test_process_collectors_and_one_prefix_for_every_app_metric() -> None:
    metrics = Metrics()
    names = {name for name, _ in samples(metrics)}
    # the standard process metrics (Linux: /proc), under their standard names
    for name in ("process_start_time_seconds", "process_resident_memory_bytes", "process_open_fds", "python_info"):
        assert name in names, f"{name} missing from {sorted(names)}"
    assert value(metrics, "process_open_fds") > 0
    metrics.observe_request("GET", "/items", 200, 0.01)
    metrics.cache_hit("local")
    metrics.breaker_rejected("database")
    families = [f.name for f in text_string_to_metric_families(metrics.render().decode())]
    own = [n for n in families if not n.startswith(("process_", "python_"))]
    assert own and all(n.startswith("hastack_app_") for n in own), own
    assert value(metrics, "hastack_app_http_requests_total", method="GET", route="/items", status="200") == 1
    assert value(metrics, "hastack_app_cache_hits_total", tier="local") == 1


def test_breaker_rejections_are_counted_when_the_breaker_refuses() -> None:
    metrics = Metrics()
    now = [0.0]
    breaker = CircuitBreaker(
        "database",
        BreakerSettings(failure_threshold=1, recovery_s=10, success_threshold=1),
        failure_types=(ConnectionError,),
        clock=lambda: now[0],
        on_change=metrics.breaker_changed,
        on_reject=metrics.breaker_rejected,
    )

    async def call(fail: bool = False) -> None:
        async with breaker.guard():
            if fail:
                raise ConnectionError("down")

    async def scenario() -> None:
        await call()  # admitted, closed: no rejection
        with pytest.raises(ConnectionError):
            await call(fail=True)  # opens it
        for _ in range(3):
            with pytest.raises(CircuitOpenError):
                await call()

    asyncio.run(scenario())
    assert value(metrics, "hastack_app_circuit_breaker_state", breaker="database") == 2
    assert value(metrics, "hastack_app_circuit_breaker_rejections_total", breaker="database") == 3


def test_database_pool_size_in_use_and_waiting_at_scrape_time(pg: Any) -> None:
    metrics = Metrics()

    async def scenario() -> list[tuple[float | None, ...]]:
        seen = []
        conninfo = f"host={pg.host} port={pg.port} dbname=hastack_app user=hastack_app password={pg.app_password}"
        async with AsyncConnectionPool(conninfo, min_size=1, max_size=1, open=False) as pool:
            await pool.open(wait=True, timeout=10)
            metrics.watch_pool("primary", pool)

            def read() -> tuple[float | None, ...]:
                return tuple(
                    value(metrics, f"hastack_app_db_pool_{n}", pool="primary")
                    for n in ("connections", "connections_in_use", "requests_waiting", "connections_max")
                )

            seen.append(read())
            async with pool.connection():
                seen.append(read())
                waiter = asyncio.create_task(pool.getconn(timeout=5))
                for _ in range(50):  # until the waiter queues
                    await asyncio.sleep(0.01)
                    if read()[2]:
                        break
                seen.append(read())
            await pool.putconn(await waiter)
            seen.append(read())
        return seen

    assert asyncio.run(scenario()) == [(1, 0, 0, 1), (1, 1, 0, 1), (1, 1, 1, 1), (1, 0, 0, 1)]
    with pytest.raises(ValueError, match="'primary' is already watched"):
        metrics.watch_pool("primary", object())  # type: ignore[arg-type]


def test_redis_pool_open_and_in_use_at_scrape_time(redis_lab: Any) -> None:
    metrics = Metrics()
    host, port = redis_lab.address("master")

    async def scenario() -> list[tuple[float | None, ...]]:
        pool = RedisPool(host=host, port=port, password=redis_lab.password, max_connections=7)
        metrics.watch_redis_pool("master", pool)

        def read() -> tuple[float | None, ...]:
            return tuple(
                value(metrics, f"hastack_app_redis_pool_{n}", pool="master")
                for n in ("connections", "connections_in_use", "connections_max")
            )

        seen = [read()]
        conn = await pool.get_connection()
        seen.append(read())
        await pool.release(conn)
        seen.append(read())
        await pool.aclose()
        return seen

    assert asyncio.run(scenario()) == [(0, 0, 7), (1, 1, 7), (1, 0, 7)]


def test_the_app_watches_its_pools(app_config: Callable[..., Any]) -> None:
    app = create_app(app_config())
    text = app.state.services.metrics.render().decode()
    for line in (
        'hastack_app_db_pool_connections_max{pool="primary"}',
        'hastack_app_db_pool_connections_max{pool="standby"}',
        'hastack_app_redis_pool_connections_max{pool="master"}',
        'hastack_app_redis_pool_connections_max{pool="replica"}',
    ):
        assert line in text


# --- request ids and the access log ------------------------------------------------


class Lines(logging.Handler):
    """The JSON lines the app's formatter writes, parsed, with their level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter("test"))
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def captured() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("hastack_app")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def serve(app_config: Callable[..., Any], requests: Callable[[httpx.AsyncClient], Any]) -> Any:
    async def run() -> Any:
        app = create_app(app_config())

        @app.get("/test/sql-comment")
        async def comment() -> dict[str, str]:
            logging.getLogger("hastack_app.test").info("inside the request")
            return {"comment": reqctx.sql_comment()}

        services = app.state.services
        await services.db.open()
        try:
            transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                return await requests(client)
        finally:
            await services.close()

    return asyncio.run(run())


def test_request_id_taken_from_the_client_or_generated_and_returned(app_config, captured: Lines) -> None:
    async def requests(client: httpx.AsyncClient) -> list[httpx.Response]:
        created = await client.post("/items", json={"name": "traced"}, headers={"X-Request-Id": "lb-4f2a:17"})
        return [
            created,
            await client.get(f"/items/{created.json()['id']}"),
            await client.get("/items/1", headers={"X-Request-Id": "x" * 65}),  # too long
            await client.get("/items/1", headers={"X-Request-Id": "has space"}),  # not printable-only
            await client.get("/ready"),
        ]

    created, plain, too_long, spaced, _ready = serve(app_config, requests)
    assert created.status_code == 201 and created.headers["X-Request-Id"] == "lb-4f2a:17"
    generated = [r.headers["X-Request-Id"] for r in (plain, too_long, spaced)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in generated), generated
    assert len(set(generated)) == 3

    access = [line for line in captured.lines if line["logger"] == "hastack_app.access"]
    assert len(access) == 5, access  # one line per request
    first = access[0]
    assert {k: first[k] for k in ("msg", "method", "route", "path", "status", "request_id", "client")} == {
        "msg": "request",
        "method": "POST",
        "route": "/items",
        "path": "/items",
        "status": 201,
        "request_id": "lb-4f2a:17",
        "client": "198.51.100.7",
    }
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] > 0
    assert access[1]["route"] == "/items/{item_id}" and access[1]["path"] == f"/items/{created.json()['id']}"
    assert [line["request_id"] for line in access[1:4]] == generated
    # the load balancer's health checks do not flood the log: DEBUG, the rest INFO
    assert [line["level"] for line in access] == ["INFO"] * 4 + ["DEBUG"]
    assert access[4]["route"] == "/ready"


def test_sql_comment_carries_the_request_id_and_cannot_be_closed_early(app_config, captured: Lines) -> None:
    async def requests(client: httpx.AsyncClient) -> list[str]:
        out = []
        for rid in ("abc-123", "a*/select;/*", "q'\\\"x"):
            response = await client.get("/test/sql-comment", headers={"X-Request-Id": rid})
            out.append(response.json()["comment"])
        return out

    plain, hostile, quotes = serve(app_config, requests)
    assert plain == "/* request_id=abc-123 */ "
    assert hostile == "/* request_id=a__select___ */ "
    assert quotes == "/* request_id=q___x */ "
    for comment in (plain, hostile, quotes):
        assert comment.count("*/") == 1 and comment.endswith("*/ ")
    # outside a request: nothing to prepend
    assert reqctx.sql_comment() == ""
    # other lines logged while serving a request carry its id
    inside = [line for line in captured.lines if line["msg"] == "inside the request"]
    assert [line["request_id"] for line in inside] == ["abc-123", "a*/select;/*", "q'\\\"x"]


def test_the_request_id_reaches_postgresql_with_the_query(make_app, pg) -> None:
    """One slow request can be followed from the access log into PostgreSQL's."""
    pg.set_config("log_min_duration_statement", "0")
    try:
        app = make_app("rid")
        assert app.client.get("/items", headers={"X-Request-Id": "follow-me-42"}).status_code == 200
        app.wait(lambda: "/* request_id=follow-me-42 */ SELECT * FROM items" in pg.log_text(), 5, "the logged query")
    finally:
        pg.set_config("log_min_duration_statement", "-1")

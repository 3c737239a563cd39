"""Bad requests in-process: 413, 422 and 404 are the client's, never a dependency failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from hastack_app.main import create_app


def scenario(app_config: Callable[..., Any], requests: Callable[[httpx.AsyncClient], Any], **env: str) -> Any:
    """Run ``requests`` against an app whose database pool is open; return what it
    returned, the breakers' states and the error statuses the metrics counted."""

    async def run() -> Any:
        app = create_app(app_config(**env))
        services = app.state.services
        await services.db.open()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                out = await requests(client)
            breakers = (services.db_breaker.state.name, services.cache_breaker.state.name)
            return out, breakers, services.metrics.render().decode()
        finally:
            await services.close()

    return asyncio.run(run())


def test_a_body_over_the_limit_gets_413(app_config) -> None:
    async def requests(client: httpx.AsyncClient) -> list[int]:
        big = {"name": "big", "data": {"blob": "x" * 70_000}}

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"x" * 8192

        return [
            (await client.post("/items", json=big)).status_code,
            (await client.post("/items", content=chunked(), headers={"Content-Type": "application/json"})).status_code,
            (await client.post("/items", json={"name": "small", "data": {"blob": "x" * 1000}})).status_code,
        ]

    statuses, breakers, metrics = scenario(app_config, requests, MAX_BODY_BYTES="65536")
    assert statuses == [413, 413, 201]
    assert breakers == ("CLOSED", "CLOSED")
    assert 'status="413"' in metrics and 'status="5' not in metrics


def test_bad_json_and_unknown_items_are_the_clients_errors(app_config) -> None:
    async def requests(client: httpx.AsyncClient) -> list[tuple[int, str]]:
        out = []
        for _ in range(3):  # more than the breakers' threshold (2 of each x 3 > 5)
            malformed = await client.post("/items", content=b'{"name": ', headers={"Content-Type": "application/json"})
            wrong_type = await client.post("/items", json={"name": "n", "data": [1, 2]})
            unknown_put = await client.put("/items/987654321", json={"name": "n"})
            unknown_delete = await client.delete("/items/987654321")
            out += [(r.status_code, r.text) for r in (malformed, wrong_type, unknown_put, unknown_delete)]
        return out

    answers, breakers, metrics = scenario(app_config, requests, DB_BREAKER_FAILURES="2", CACHE_BREAKER_FAILURES="2")
    assert [status for status, _ in answers] == [422, 422, 404, 404] * 3
    assert "json_invalid" in answers[0][1]
    assert '"loc":["body","data"]' in answers[1][1]  # the field is named
    assert "987654321 not found" in answers[2][1]
    assert breakers == ("CLOSED", "CLOSED")
    assert 'status="5' not in metrics

"""The FastAPI application: items API, /health, /ready, /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__, reqctx
from .breaker import CircuitBreaker, CircuitOpenError, Saturated
from .cache import CACHE_FAILURES, TOMBSTONE, Cache
from .config import BreakerSettings, Config
from .db import DB_FAILURES, Database, StandbyBehind
from .db import PRIMARY as PRIMARY_SOURCE
from .metrics import Metrics
from .readiness import Check, Degraded, Readiness, storage_probe
from .schema import SchemaError

log = logging.getLogger("hastack_app")
access_log = logging.getLogger("hastack_app.access")

# Probes of the load balancer, the kubelet and Prometheus: their access log
# lines go out at DEBUG (HAProxy alone checks /ready every second per instance).
QUIET_ROUTES = frozenset({"/health", "/ready", "/metrics"})


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    data: dict[str, Any] = Field(default_factory=dict)


def item_key(item_id: int) -> str:
    return f"item:{item_id}"


# Retry-After on a 503 for a database call that failed (before the breaker opens)
DB_RETRY_AFTER_S = 2


def retry_later(status: int, error: str, exc: CircuitOpenError | Saturated | StandbyBehind) -> JSONResponse:
    return JSONResponse(
        {"error": error, "detail": str(exc)},
        status_code=status,
        headers={"Retry-After": str(max(1, round(exc.retry_after_s)))},
    )


class BodyLimit:
    """413 for a request body over ``limit`` bytes, declared (Content-Length) or
    sent (chunked), before any route or dependency sees it. The body is read
    here (at most ``limit`` bytes) and handed on as one message."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        chunks: list[bytes] = []
        size = int(declared) if declared.isdigit() else 0
        more = size <= self.limit
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size = sum(map(len, chunks))
            more = message.get("more_body", False) and size <= self.limit
        if size > self.limit:
            response = JSONResponse(
                {"error": "request body too large", "detail": f"over {self.limit} bytes (HASTACK_APP_MAX_BODY_BYTES)"},
                status_code=413,
            )
            await response(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


class Services:
    """Everything one app instance holds; built from the config, nothing global."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.db_breaker = self._breaker("database", config.db_breaker, DB_FAILURES)
        self.standby_breaker = self._breaker("database_standby", config.db_breaker, DB_FAILURES)
        self.cache_breaker = self._breaker("cache", config.cache_breaker, CACHE_FAILURES)
        self.db = Database(config, self.db_breaker, self.standby_breaker)
        self.metrics.watch_pool("primary", self.db.pool)
        if self.db.standbys is not None:
            self.metrics.watch_pool("standby", self.db.standbys)
        self.cache = Cache(config, self.cache_breaker, self.metrics)
        self.metrics.watch_redis_pool("master", self.cache.master.connection_pool)
        self.metrics.watch_redis_pool("replica", self.cache.replica.connection_pool)
        self.readiness = Readiness(
            [
                Check("database", True, self.database_check, self.db_breaker),
                Check("storage", True, storage_probe(config.storage_path)),
                Check("cache", False, self.cache.ping, self.cache_breaker),
            ],
            timeout_s=config.ready_check_timeout_s,
            cache_s=config.ready_cache_s,
            metrics=self.metrics,
        )
        self.started = time.monotonic()

    async def database_check(self, timeout: float) -> str:
        """The primary, and while there is none, a standby to read from.

        Both are tried at once within the budget. A primary that answered
        half-opens the database breaker (the next request is its probe): an
        instance is not put back in the load balancer only to refuse writes
        for ``recovery_s``. No primary but a standby: ``Degraded`` (ready,
        reads only). Neither, or the schema not migrated: the primary's error.
        """
        budget = timeout * 0.8  # inside the check's own timeout, with time to answer
        primary = asyncio.ensure_future(asyncio.wait_for(self.db.ping(budget), budget))
        standby = (
            asyncio.ensure_future(asyncio.wait_for(self.db.ping_standby(budget), budget))
            if self.db.standbys is not None
            else None
        )
        try:
            server = await primary
        except SchemaError:
            if standby is not None:
                standby.cancel()
            raise
        except Exception as exc:
            if standby is None:
                raise
            try:
                source = await standby
            except Exception:
                raise exc from None
            raise Degraded(
                f"no primary ({type(exc).__name__}): reads from {source.served_by} {source.server} "
                f"(replay lag {source.lag_s:.1f} s), writes get 503",
                {"served_by": source.served_by, "server": source.server, "lag_s": source.lag_s},
            ) from None
        if standby is not None:
            with contextlib.suppress(Exception):
                await standby
        self.db_breaker.probe_succeeded()
        return server

    def _breaker(
        self, name: str, settings: BreakerSettings, failures: tuple[type[BaseException], ...]
    ) -> CircuitBreaker:
        """A breaker whose changes and refusals reach the metrics and the log."""
        return CircuitBreaker(
            name,
            settings,
            failure_types=failures,
            on_change=self._breaker_changed,
            on_reject=self.metrics.breaker_rejected,
        )

    def _breaker_changed(self, name: str, state: Any) -> None:
        self.metrics.breaker_changed(name, state)
        log.warning("circuit breaker state changed", extra={"breaker": name, "state": state.name})

    async def start(self) -> None:
        await self.db.open()
        await self.cache.start()

    async def close(self) -> None:
        await self.cache.close()
        await self.db.close()


def create_app(config: Config) -> FastAPI:
    services = Services(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        log.info("started", extra={"listen": f"{config.listen_host}:{config.listen_port}", "version": __version__})
        try:
            yield
        finally:
            await services.close()
            log.info("stopped")

    app = FastAPI(title="hastack app", version=__version__, lifespan=lifespan)
    app.state.services = services
    metrics = services.metrics
    # added before observe, so it runs inside it: a 413 is counted with its status
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Metrics and one access log line per request, under its request id
        (the client's X-Request-Id when usable, else a new one; sent back in
        the response's X-Request-Id)."""
        t0 = time.monotonic()
        status = 500
        request_id = reqctx.accept(request.headers.get(reqctx.HEADER))
        token = reqctx.set_request_id(request_id)
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers[reqctx.HEADER] = request_id
            return response
        finally:
            seconds = time.monotonic() - t0
            route = getattr(request.scope.get("route"), "path", "unmatched")
            metrics.observe_request(request.method, route, status, seconds)
            access_log.log(
                logging.DEBUG if route in QUIET_ROUTES else logging.INFO,
                "request",
                extra={
                    "method": request.method,
                    "route": route,
                    "path": request.url.path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "request_id": request_id,
                    "client": request.client.host if request.client else None,
                    "forwarded_for": request.headers.get("x-forwarded-for"),
                },
            )
            reqctx.reset(token)

    @app.exception_handler(CircuitOpenError)
    async def breaker_open(request: Request, exc: CircuitOpenError) -> JSONResponse:
        return retry_later(503, "service unavailable", exc)

    @app.exception_handler(Saturated)
    async def saturated(request: Request, exc: Saturated) -> JSONResponse:
        # back-pressure: the client (or HAProxy's retry) comes back; not an outage
        return retry_later(429, "too many requests", exc)

    @app.exception_handler(StandbyBehind)
    async def standby_behind(request: Request, exc: StandbyBehind) -> JSONResponse:
        return retry_later(503, "database unavailable", exc)

    @app.exception_handler(psycopg.Error)
    async def database_error(request: Request, exc: psycopg.Error) -> JSONResponse:
        if isinstance(exc, DB_FAILURES):
            log.warning("database unavailable", extra={"path": request.url.path, "error": repr(exc)[:300]})
            return JSONResponse(
                {"error": "database unavailable", "detail": type(exc).__name__},
                status_code=503,
                headers={"Retry-After": str(DB_RETRY_AFTER_S)},
            )
        log.error("database error", extra={"path": request.url.path, "error": repr(exc)[:300]})
        return JSONResponse({"error": "database error", "detail": type(exc).__name__}, status_code=500)

    @app.exception_handler(TimeoutError)
    async def timeout_error(request: Request, exc: TimeoutError) -> JSONResponse:
        log.warning("database timeout", extra={"path": request.url.path})
        return JSONResponse(
            {"error": "database unavailable", "detail": "timeout"},
            status_code=503,
            headers={"Retry-After": str(DB_RETRY_AFTER_S)},
        )

    # -- probes ----------------------------------------------------------------
    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness: the process answers and its event loop turns (no dependency checks)."""
        t0 = time.monotonic()
        await asyncio.sleep(0)
        return {
            "status": "ok",
            "instance": config.instance,
            "version": __version__,
            "uptime_s": round(time.monotonic() - services.started, 1),
            "loop_turn_ms": round((time.monotonic() - t0) * 1000, 3),
        }

    @app.get("/ready")
    async def ready() -> JSONResponse:
        code, body = await services.readiness.evaluate()
        body["instance"] = config.instance
        body["cache_invalidation"] = {
            "subscribed": services.cache.subscribed,
            "master": services.cache.subscribed_to,
            "subscriptions": services.cache.resubscriptions,
            "pending_invalidations": len(services.cache._pending),
        }
        return JSONResponse(body, status_code=code)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    # -- items -------------------------------------------------------------------
    @app.post("/items", status_code=201)
    async def create_item(item: ItemIn) -> dict[str, Any]:
        row = await services.db.create(item.name, item.data)
        await services.cache.write(item_key(row["id"]), row)
        return row

    @app.get("/items")
    async def list_items(
        response: Response, limit: int = Query(50, ge=1, le=500), after: int = Query(0, ge=0)
    ) -> dict[str, Any]:
        rows, source = await services.db.list(limit, after)
        response.headers.update(source.headers())
        return {"items": rows, "next_after": rows[-1]["id"] if len(rows) == limit else None}

    @app.get("/items/{item_id}")
    async def get_item(item_id: int, response: Response) -> dict[str, Any]:
        key = item_key(item_id)
        cached = await services.cache.get(key)
        if cached is not None:
            if cached == TOMBSTONE:
                raise HTTPException(404, f"item {item_id} not found", headers={"X-Served-By": "cache"})
            response.headers.update({"X-Cache": "hit", "X-Served-By": "cache"})
            return cached
        row, source = await services.db.get(item_id)
        response.headers["X-Cache"] = "miss"
        response.headers.update(source.headers())
        if row is None:
            raise HTTPException(404, f"item {item_id} not found", headers=source.headers())
        if source is PRIMARY_SOURCE:
            # only the primary fills the cache: a standby's row may be older
            # than one the app acknowledged, and must not outlive the failover
            await services.cache.fill(key, row)
        return row

    @app.put("/items/{item_id}")
    async def update_item(item_id: int, item: ItemIn) -> dict[str, Any]:
        row = await services.db.update(item_id, item.name, item.data)
        if row is None:
            raise HTTPException(404, f"item {item_id} not found")
        await services.cache.write(item_key(item_id), row)
        return row

    @app.delete("/items/{item_id}", status_code=204)
    async def delete_item(item_id: int) -> Response:
        if not await services.db.delete(item_id):
            raise HTTPException(404, f"item {item_id} not found")
        await services.cache.write(item_key(item_id), TOMBSTONE)
        return Response(status_code=204)

    return app

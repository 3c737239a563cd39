"""/ready: database and storage are critical (503), the cache only degrades (200).

A critical check may itself answer "degraded" (``Degraded``): the database
without a primary but with a standby to read from. The instance stays in the
load balancer (200, status ``degraded``, the reason in ``reasons``): it serves
reads, and writes get 503 with Retry-After from the app itself.

Every check has its own timeout, shorter than the load balancer's or the
kubelet's probe timeout; the checks run concurrently, at most one round at a
time, and a result is reused for ``ready_cache_s`` so a burst of probes costs
one round.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .breaker import CircuitBreaker
from .metrics import Metrics


class Degraded(Exception):
    """The check passed in part: the instance can serve, but not everything."""

    def __init__(self, reason: str, detail: Any = None) -> None:
        super().__init__(reason)
        self.detail = detail


@dataclass
class Check:
    name: str
    critical: bool
    run: Callable[[float], Awaitable[str]]
    breaker: CircuitBreaker | None = None


def storage_probe(path: Path) -> Callable[[float], Awaitable[str]]:
    """Write, read back and remove a small file under ``path`` (in a thread)."""

    def probe() -> str:
        target = path / f".ready-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        payload = uuid.uuid4().bytes
        try:
            with open(target, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            if target.read_bytes() != payload:
                raise OSError(f"read back other bytes than written in {path}")
        finally:
            target.unlink(missing_ok=True)
        return str(path)

    async def run(timeout: float) -> str:
        return await asyncio.wait_for(asyncio.to_thread(probe), timeout)

    return run


class Readiness:
    def __init__(self, checks: list[Check], timeout_s: float, cache_s: float, metrics: Metrics) -> None:
        self.checks = checks
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self.metrics = metrics
        self._result: tuple[float, int, dict[str, Any]] | None = None
        self._running: asyncio.Task[tuple[int, dict[str, Any]]] | None = None

    async def _one(self, check: Check) -> dict[str, Any]:
        t0 = time.monotonic()
        try:
            detail = await asyncio.wait_for(check.run(self.timeout_s), self.timeout_s)
            state, error = "ok", None
        except Degraded as exc:
            detail, state, error = exc.detail, "degraded", str(exc)[:300]
        except TimeoutError:
            detail, state, error = None, "failed", f"no answer within {self.timeout_s} s"
        except Exception as exc:
            detail, state, error = None, "failed", f"{type(exc).__name__}: {exc}"[:300]
        if state == "failed" and not check.critical:
            state = "degraded"
        self.metrics.ready_check.labels(check.name).set(1 if state == "ok" else 0)
        out: dict[str, Any] = {
            "state": state,
            "critical": check.critical,
            "latency_ms": round((time.monotonic() - t0) * 1000, 2),
            "detail": detail,
            "error": error,
        }
        if check.breaker is not None:
            out["breaker"] = check.breaker.snapshot()
        return out

    async def _round(self) -> tuple[int, dict[str, Any]]:
        results = await asyncio.gather(*(self._one(c) for c in self.checks))
        checks = {c.name: r for c, r in zip(self.checks, results, strict=True)}
        failed = [n for n, r in checks.items() if r["state"] == "failed"]
        degraded = [n for n, r in checks.items() if r["state"] == "degraded"]
        status = "not_ready" if failed else ("degraded" if degraded else "ready")
        reasons = [f"{n}: {checks[n]['error']}" for n in failed + degraded]
        body = {"status": status, "reasons": reasons, "checks": checks}
        code = 503 if failed else 200
        self._result = (time.monotonic(), code, body)
        return code, body

    async def evaluate(self) -> tuple[int, dict[str, Any]]:
        if self._result and time.monotonic() - self._result[0] < self.cache_s:
            _, code, body = self._result
            return code, {**body, "cached": True}
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._round())
        code, body = await asyncio.shield(self._running)
        return code, {**body, "cached": False}

"""A small circuit breaker for asyncio.

CLOSED: calls pass; ``failure_threshold`` consecutive failures open it.
OPEN: calls fail fast with ``CircuitOpenError`` until ``recovery_s`` passed.
HALF_OPEN: one probe call at a time passes (the others fail fast);
``success_threshold`` consecutive successful probes close it, one failure
opens it again for another ``recovery_s``. An outside check that reached the
dependency (the readiness probe) half-opens an open breaker at once
(``probe_succeeded``): readiness and the breaker agree, and recovery after a
failover is not held back by ``recovery_s``.

Why not a library: pybreaker's async support is Tornado-only and the asyncio
ones on PyPI either let every caller through in half-open or have no success
threshold. Every state change happens synchronously between two awaits, so
the event loop needs no lock; the probe slot is released in ``finally`` (a
cancelled probe counts as a failure, since it proved nothing).
"""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from .config import BreakerSettings


class State(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitOpenError(RuntimeError):
    """The breaker refused the call without trying it."""

    def __init__(self, name: str, retry_after_s: float) -> None:
        super().__init__(f"circuit breaker '{name}' is open; retry in {retry_after_s:.1f} s")
        self.name = name
        self.retry_after_s = retry_after_s


class Saturated(RuntimeError):
    """This instance's own pool to a dependency is full: back-pressure, not a
    failure of the dependency. The breaker counts it as neither a failure nor
    a success (the dependency was not tried); the API answers 429."""

    def __init__(self, name: str, detail: str, retry_after_s: float = 1.0) -> None:
        super().__init__(f"{name}: {detail}; retry in {retry_after_s:.0f} s")
        self.name = name
        self.retry_after_s = retry_after_s


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        settings: BreakerSettings,
        failure_types: tuple[type[BaseException], ...] = (Exception,),
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, State], None] | None = None,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.failure_types = failure_types
        self._clock = clock
        self._on_change = on_change
        self._on_reject = on_reject  # called with the name for every call refused
        self._state = State.CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0
        self._probing = False
        # bumped on every state change: a call admitted before it reports nothing
        self._generation = 0
        self.last_error: str | None = None
        if on_change:
            on_change(name, self._state)

    # -- state ---------------------------------------------------------------
    @property
    def state(self) -> State:
        """The current state; OPEN turns HALF_OPEN once recovery_s has passed."""
        if self._state is State.OPEN and self._clock() - self._opened_at >= self.settings.recovery_s:
            self._set(State.HALF_OPEN)
        return self._state

    def _set(self, state: State) -> None:
        if state is self._state:
            return
        self._state = state
        self._generation += 1
        if state is State.OPEN:
            self._opened_at = self._clock()
        self._failures = 0
        self._successes = 0
        if self._on_change:
            self._on_change(self.name, state)

    def retry_after(self) -> float:
        return max(0.0, self.settings.recovery_s - (self._clock() - self._opened_at))

    def snapshot(self) -> dict[str, object]:
        state = self.state
        return {
            "state": state.name,
            "consecutive_failures": self._failures,
            "retry_after_s": round(self.retry_after(), 3) if state is State.OPEN else 0.0,
            "last_error": self.last_error,
        }

    def probe_succeeded(self) -> None:
        """A check outside the breaker reached the dependency: an open breaker
        half-opens now, so the next call is its probe."""
        if self.state is State.OPEN:
            self._set(State.HALF_OPEN)

    # -- outcomes ------------------------------------------------------------
    def record_success(self) -> None:
        if self._state is State.HALF_OPEN:
            self._successes += 1
            if self._successes >= self.settings.success_threshold:
                self._set(State.CLOSED)
        else:
            self._failures = 0

    def record_failure(self, error: BaseException | str) -> None:
        self.last_error = str(error)[:300] or type(error).__name__
        if self._state is State.HALF_OPEN:
            self._set(State.OPEN)
        elif self._state is State.CLOSED:
            self._failures += 1
            if self._failures >= self.settings.failure_threshold:
                self._set(State.OPEN)

    # -- guarding a call -----------------------------------------------------
    def _admit(self) -> bool:
        """Admit a call or raise; True when the call is the half-open probe."""
        state = self.state
        if state is State.CLOSED:
            return False
        if state is State.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        if self._on_reject:
            self._on_reject(self.name)
        raise CircuitOpenError(self.name, self.retry_after() if state is State.OPEN else 0.0)

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """``async with breaker.guard(): ...`` counts the block as one call.

        Exceptions of ``failure_types`` count as failures; others (a missing
        row, a constraint violation) prove the dependency answered and count
        as successes; ``Saturated`` counts as neither. The exception
        propagates either way.
        """
        probe = self._admit()
        generation = self._generation
        try:
            yield
        except Saturated:
            raise
        except self.failure_types as exc:
            if generation == self._generation:
                self.record_failure(exc)
            raise
        except BaseException as exc:
            if generation == self._generation:
                # cancellation of a probe proves nothing: reopen rather than close
                if probe and not isinstance(exc, Exception):
                    self.record_failure("probe cancelled")
                elif isinstance(exc, Exception):
                    self.record_success()
            raise
        else:
            if generation == self._generation:
                self.record_success()
        finally:
            if probe:
                self._probing = False

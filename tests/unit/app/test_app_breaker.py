"""The circuit breaker's state machine, on an injected clock."""

from __future__ import annotations

import asyncio

import pytest
from hastack_app.breaker import CircuitBreaker, CircuitOpenError, State
from hastack_app.config import BreakerSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Down(Exception):
    pass


def make(**settings: float) -> tuple[CircuitBreaker, Clock, list[State]]:
    clock = Clock()
    seen: list[State] = []
    breaker = CircuitBreaker(
        "db", BreakerSettings(**settings), failure_types=(Down,), clock=clock, on_change=lambda _n, s: seen.append(s)
    )
    return breaker, clock, seen


async def call(breaker: CircuitBreaker, fail: bool = False, hold: asyncio.Event | None = None) -> str:
    async with breaker.guard():
        if hold is not None:
            await hold.wait()
        if fail:
            raise Down("refused")
    return "ok"


async def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Down):
            await call(breaker, fail=True)


def test_opens_after_5_consecutive_failures_only() -> None:
    async def scenario() -> None:
        breaker, _, seen = make()
        await fail(breaker, 4)
        await call(breaker)  # a success resets the count
        await fail(breaker, 4)
        assert breaker.state is State.CLOSED
        await fail(breaker, 1)
        assert breaker.state is State.OPEN
        assert seen == [State.CLOSED, State.OPEN]
        with pytest.raises(CircuitOpenError) as refused:
            await call(breaker)
        assert refused.value.retry_after_s == pytest.approx(10.0)

    asyncio.run(scenario())


def test_half_open_after_recovery_s_then_2_successes_close() -> None:
    async def scenario() -> None:
        breaker, clock, seen = make()
        await fail(breaker, 5)
        clock.now += 9.9
        assert breaker.state is State.OPEN
        clock.now += 0.1
        assert breaker.state is State.HALF_OPEN
        assert await call(breaker) == "ok"
        assert breaker.state is State.HALF_OPEN
        assert await call(breaker) == "ok"
        assert breaker.state is State.CLOSED
        assert seen == [State.CLOSED, State.OPEN, State.HALF_OPEN, State.CLOSED]

    asyncio.run(scenario())


def test_a_failed_probe_reopens_for_another_recovery_period() -> None:
    async def scenario() -> None:
        breaker, clock, _ = make()
        await fail(breaker, 5)
        clock.now += 10
        await call(breaker)
        await fail(breaker, 1)  # one failure in half-open is enough
        assert breaker.state is State.OPEN
        clock.now += 9
        assert breaker.state is State.OPEN
        clock.now += 1
        assert breaker.state is State.HALF_OPEN

    asyncio.run(scenario())


def test_a_successful_outside_probe_half_opens_an_open_breaker_at_once() -> None:
    """Readiness reached the dependency: the next call is the probe, now, not
    after recovery_s (readiness said ready while the breaker refused calls)."""

    async def scenario() -> None:
        breaker, clock, seen = make()
        breaker.probe_succeeded()  # closed: nothing to do
        assert breaker.state is State.CLOSED
        await fail(breaker, 5)
        clock.now += 1
        breaker.probe_succeeded()
        assert breaker.state is State.HALF_OPEN
        assert await call(breaker) == "ok"
        assert await call(breaker) == "ok"
        assert seen == [State.CLOSED, State.OPEN, State.HALF_OPEN, State.CLOSED]

    asyncio.run(scenario())


def test_half_open_lets_one_probe_through_at_a_time() -> None:
    async def scenario() -> None:
        breaker, clock, _ = make()
        await fail(breaker, 5)
        clock.now += 10
        hold = asyncio.Event()
        probe = asyncio.create_task(call(breaker, hold=hold))
        await asyncio.sleep(0)  # the probe is inside the guard now
        others = await asyncio.gather(*(call(breaker) for _ in range(10)), return_exceptions=True)
        assert all(isinstance(o, CircuitOpenError) for o in others)
        hold.set()
        assert await probe == "ok"
        assert await call(breaker) == "ok"  # the next probe may go
        assert breaker.state is State.CLOSED

    asyncio.run(scenario())


def test_a_cancelled_probe_reopens_and_frees_the_slot() -> None:
    async def scenario() -> None:
        breaker, clock, _ = make()
        await fail(breaker, 5)
        clock.now += 10
        probe = asyncio.create_task(call(breaker, hold=asyncio.Event()))
        await asyncio.sleep(0)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        assert breaker.state is State.OPEN
        clock.now += 10
        assert await call(breaker) == "ok"

    asyncio.run(scenario())


def test_answers_that_are_not_outages_do_not_count() -> None:
    async def scenario() -> None:
        breaker, _, _ = make()
        for _ in range(10):
            with pytest.raises(KeyError):
                async with breaker.guard():
                    raise KeyError("no such item")
        assert breaker.state is State.CLOSED

    asyncio.run(scenario())


def test_calls_admitted_before_a_state_change_report_nothing() -> None:
    async def scenario() -> None:
        breaker, clock, _ = make(success_threshold=1)
        hold = asyncio.Event()
        slow = asyncio.create_task(call(breaker, hold=hold))  # admitted while closed
        await asyncio.sleep(0)
        await fail(breaker, 5)
        clock.now += 10
        assert breaker.state is State.HALF_OPEN
        hold.set()
        await slow  # its success is from before: the breaker still waits for a probe
        assert breaker.state is State.HALF_OPEN

    asyncio.run(scenario())


def test_settings_are_honoured() -> None:
    async def scenario() -> None:
        breaker, clock, _ = make(failure_threshold=2, recovery_s=5, success_threshold=3)
        await fail(breaker, 2)
        assert breaker.state is State.OPEN
        clock.now += 5
        for _ in range(2):
            await call(breaker)
        assert breaker.state is State.HALF_OPEN
        await call(breaker)
        assert breaker.state is State.CLOSED

    asyncio.run(scenario())

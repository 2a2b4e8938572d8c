"""The circuit breaker's states, driven by a clock the test moves by hand."""

from __future__ import annotations

import asyncio

import pytest

from twofold.application.failure import BreakerOpenError, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker("cache", failure_threshold=threshold, reset_after=1.0, clock=clock)


def test_breaker_opens_after_the_threshold_of_failures_in_a_row() -> None:
    clock = Clock()
    b = breaker(clock)
    b.failed(ConnectionError("refused"))
    b.failed(ConnectionError("refused"))
    assert b.state is BreakerState.CLOSED and b.allow()
    b.failed(ConnectionError("refused"))
    assert b.state is BreakerState.OPEN
    assert not b.allow()
    assert b.opened == 1
    assert b.last_error == "ConnectionError: refused"


def test_a_success_resets_the_count_of_failures() -> None:
    b = breaker(Clock())
    b.failed("x")
    b.failed("x")
    b.succeeded()
    b.failed("x")
    b.failed("x")
    assert b.state is BreakerState.CLOSED


def test_after_reset_after_one_trial_goes_through_and_its_success_closes() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1)
    b.failed("down")
    clock.now += 1.0
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow()  # the trial
    assert not b.allow()  # only one at a time
    b.succeeded()
    assert b.state is BreakerState.CLOSED and b.allow()


def test_a_failed_trial_opens_again() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1)
    b.failed("down")
    clock.now += 1.0
    assert b.allow()
    b.failed("still down")
    assert b.state is BreakerState.OPEN
    assert not b.allow()
    assert b.opened == 2


def test_a_trial_that_never_reports_is_replaced() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1)
    b.failed("down")
    clock.now += 1.0
    assert b.allow()
    clock.now += 1.0
    assert b.allow()


async def test_call_fails_slow_calls_and_refuses_while_open() -> None:
    b = CircuitBreaker("cache", failure_threshold=1, reset_after=60)
    never = asyncio.Event()
    with pytest.raises(TimeoutError):
        await b.call(never.wait, timeout=0.01)
    assert b.state is BreakerState.OPEN
    with pytest.raises(BreakerOpenError, match="cache is not called for now"):
        await b.call(never.wait, timeout=0.01)


def test_breaker_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("x", failure_threshold=0)
    with pytest.raises(ValueError, match="reset_after"):
        CircuitBreaker("x", reset_after=0)

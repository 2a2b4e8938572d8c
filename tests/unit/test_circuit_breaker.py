"""The breaker's single-trial mode (the rest: tests/unit/relay/test_failure.py)."""

from __future__ import annotations

from twofold.application.failure import Backoff, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def opened(clock: Clock, *, single_trial: bool) -> CircuitBreaker:
    breaker = CircuitBreaker(
        failure_threshold=1,
        backoff=Backoff(initial=1.0, maximum=1.0, jitter=0),
        clock=clock,
        single_trial=single_trial,
    )
    breaker.failure(ConnectionError("refused"))
    assert not breaker.allow()
    clock.now += 1.0
    assert breaker.state is BreakerState.HALF_OPEN
    return breaker


def test_a_single_trial_breaker_lets_one_call_through_when_half_open() -> None:
    clock = Clock()
    breaker = opened(clock, single_trial=True)
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # the others wait for its outcome
    assert not breaker.allow()
    breaker.success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() and breaker.allow()


def test_a_failed_single_trial_opens_the_breaker_again() -> None:
    clock = Clock()
    breaker = opened(clock, single_trial=True)
    assert breaker.allow()
    breaker.failure(TimeoutError())
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.now += 1.0
    assert breaker.allow()  # a new trial after the delay


def test_a_trial_that_never_reports_is_replaced_after_another_delay() -> None:
    clock = Clock()
    breaker = opened(clock, single_trial=True)
    assert breaker.allow()
    clock.now += 0.5
    assert not breaker.allow()
    clock.now += 0.5
    assert breaker.allow()


def test_without_single_trial_half_open_lets_every_call_through() -> None:
    breaker = opened(Clock(), single_trial=False)
    assert breaker.allow() and breaker.allow() and breaker.allow()

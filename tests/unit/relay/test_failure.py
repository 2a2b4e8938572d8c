"""Backoff and CircuitBreaker, driven by a fake clock and a seeded random source."""

from __future__ import annotations

import random

import pytest

from twofold.application.failure import Backoff, BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_grows_exponentially_up_to_its_maximum() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_backoff_survives_a_very_long_outage() -> None:
    assert Backoff(initial=0.1, maximum=5.0, jitter=0.0).delay(100_000) == 5.0


def test_backoff_jitter_stays_within_its_band_and_spreads_the_delays() -> None:
    backoff = Backoff(initial=1.0, maximum=1.0, jitter=0.5)
    rng = random.Random(7)
    delays = [backoff.delay(0, rng) for _ in range(200)]
    assert all(0.5 <= d <= 1.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100


@pytest.mark.parametrize(
    "options",
    [
        {"initial": 0},
        {"initial": 2.0, "maximum": 1.0},
        {"multiplier": 0.5},
        {"jitter": 1.5},
    ],
)
def test_backoff_refuses_nonsense_settings(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**options)


def breaker(clock: FakeClock, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=threshold,
        backoff=Backoff(initial=1.0, maximum=8.0, jitter=0.0),
        clock=clock,
    )


def test_breaker_opens_after_the_threshold_of_consecutive_failures() -> None:
    clock = FakeClock()
    cb = breaker(clock)
    cb.failure("e1")
    cb.failure("e2")
    assert cb.allow() and cb.state is BreakerState.CLOSED
    cb.failure(ConnectionError("refused"))
    assert not cb.allow()
    status = cb.status()
    assert status.state is BreakerState.OPEN
    assert status.opened == 1
    assert status.retry_in == pytest.approx(1.0)
    assert status.last_error == "ConnectionError: refused"


def test_a_success_resets_the_count_of_failures() -> None:
    cb = breaker(FakeClock())
    cb.failure("e")
    cb.failure("e")
    cb.success()
    cb.failure("e")
    cb.failure("e")
    assert cb.state is BreakerState.CLOSED


def test_breaker_lets_a_trial_through_after_the_delay_and_closes_on_success() -> None:
    clock = FakeClock()
    cb = breaker(clock, threshold=1)
    cb.failure("down")
    clock.now += 0.999
    assert not cb.allow()
    clock.now += 0.001
    assert cb.allow() and cb.state is BreakerState.HALF_OPEN
    cb.success()
    status = cb.status()
    assert status.state is BreakerState.CLOSED and status.failures == 0


def test_a_failed_trial_reopens_the_breaker_for_longer_each_time() -> None:
    clock = FakeClock()
    cb = breaker(clock, threshold=1)
    cb.failure("down")
    waits = []
    for _ in range(5):
        waits.append(cb.retry_in())
        clock.now += cb.retry_in()
        assert cb.state is BreakerState.HALF_OPEN
        cb.failure("still down")
    assert waits == pytest.approx([1.0, 2.0, 4.0, 8.0, 8.0])
    assert cb.status().opened == 6

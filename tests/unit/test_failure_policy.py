"""The one failure policy: backoff with jitter, a cap, a limit on attempts."""

from __future__ import annotations

import random

import pytest

from twofold import Collection, Projection
from twofold.application.failure import (
    RECONNECT,
    STORE_RETRY,
    Backoff,
    RetryPolicy,
    handler_policy,
)


def test_a_policy_grows_caps_spreads_and_stops() -> None:
    policy = RetryPolicy(Backoff(initial=1.0, maximum=8.0, jitter=0.5), attempts=3)
    rng = random.Random(7)
    delays = [policy.delay(n, rng) for n in range(6)]
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert all(c * 0.5 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jitter: no two retries in step
    assert [policy.exhausted(n) for n in range(5)] == [False, False, False, True, True]


def test_stores_are_retried_without_a_limit_and_handlers_with_one() -> None:
    assert not STORE_RETRY.exhausted(10**6) and not RECONNECT.exhausted(10**6)
    handler = handler_policy(retries=2, retry_delay=0.05)
    assert (handler.attempts, handler.backoff.initial, handler.backoff.maximum) == (2, 0.05, 30.0)
    assert handler.exhausted(2) and not handler.exhausted(1)
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=-1)


def test_a_projection_refuses_a_policy_it_cannot_follow() -> None:
    with pytest.raises(ValueError, match="retry_delay must be above 0"):

        class Instant(Projection):
            name = "instant"
            collections = (Collection("instant"),)
            retry_delay = 0.0

    with pytest.raises(ValueError, match="retries must be a whole number"):

        class Negative(Projection):
            name = "negative"
            collections = (Collection("negative"),)
            retries = -1

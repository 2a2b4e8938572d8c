"""One failure policy for twofold: exponential backoff with jitter, a cap and a limit on
attempts (``RetryPolicy``), and a circuit breaker (``CircuitBreaker``).

Who uses them: projections (a failing handler: ``handler_policy``; a failing store:
``STORE_RETRY`` in ``ProjectionRunner.supervise``, with a breaker whose state shows in
``/health``), the PostgreSQL LISTEN connections and checkpoint notifier when they
reconnect (``RECONNECT``), the relay and the bus consumers (``BROKER_RETRY``, and a
breaker for the relay), integration handlers (``HANDLER_RETRY``), the cache (a breaker).

Why our own and not stamina or tenacity: both are retry *decorators* around one call
that is attempted again; what twofold retries are long-lived loops (a runner that must
report ``retrying`` with its attempts between tries, a LISTEN connection that reconnects
forever, a relay whose breaker state is read by health and metrics while it waits).
Those need the delay and the breaker state as plain values the loop asks for, driven in
tests by an injected clock and random source without sleeping; the decorators own the
loop and the sleep. What they would add over the fifty lines below is that loop, which is
exactly the part twofold needs to own. Both classes take their randomness and their clock
as arguments, so tests drive them without sleeping.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import time
from collections.abc import Callable

__all__ = [
    "BROKER_RETRY",
    "HANDLER_RETRY",
    "RECONNECT",
    "STORE_RETRY",
    "Backoff",
    "BreakerState",
    "BreakerStatus",
    "CircuitBreaker",
    "RetryPolicy",
    "handler_policy",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Delays that grow exponentially, capped, and spread by jitter.

    The n-th retry (n = 0, 1, 2...) waits ``min(maximum, initial * multiplier**n)`` scaled by a
    random factor in ``[1 - jitter, 1]``: with many clients retrying at once, jitter keeps them
    from coming back in step (jitter = 1 is "full jitter", 0 none).
    """

    initial: float = 0.1
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial:
            raise ValueError("Backoff needs 0 < initial <= maximum (seconds)")
        if self.multiplier < 1:
            raise ValueError("Backoff.multiplier must be 1 or more")
        if not 0 <= self.jitter <= 1:
            raise ValueError("Backoff.jitter must be between 0 and 1")

    def ceiling(self, attempt: int) -> float:
        """The delay of retry ``attempt`` before jitter."""
        if attempt < 0:
            raise ValueError("attempt counts from 0")
        # Grow step by step and stop at the cap: a long outage must not overflow a float.
        grown = self.initial
        for _ in range(attempt):
            grown *= self.multiplier
            if grown >= self.maximum:
                return self.maximum
        return min(self.maximum, grown)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay, in seconds, before retry ``attempt`` (0 is the first retry)."""
        draw = (rng or _rng).random()
        return self.ceiling(attempt) * (1 - self.jitter * draw)


_rng = random.Random()


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often to try again: ``backoff`` between tries, at most ``attempts`` retries
    (None: until it passes, for what must come back, like a store)."""

    backoff: Backoff = Backoff()
    attempts: int | None = None

    def __post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 0:
            raise ValueError("RetryPolicy.attempts must be 0 or more (or None: no limit)")

    def exhausted(self, retries: int) -> bool:
        """Whether ``retries`` retries already made are all this policy allows."""
        return self.attempts is not None and retries >= self.attempts

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0 is the first)."""
        return self.backoff.delay(retry, rng)


STORE_RETRY = RetryPolicy(Backoff(initial=0.5, maximum=30.0, jitter=0.5))
"""A store that fails (not a handler): tried again until it answers, 0.5 s doubling to 30 s."""
RECONNECT = RetryPolicy(Backoff(initial=0.05, maximum=5.0, jitter=0.5))
"""A lost connection that only listens (LISTEN, notifications): reconnected until closed."""
BROKER_RETRY = RetryPolicy(Backoff(initial=0.1, maximum=10.0, jitter=0.5))
"""A broker that fails under the relay or a bus consumer: 0.1 s doubling to 10 s, no limit
(the log is the queue: nothing is lost while it waits)."""
HANDLER_RETRY = RetryPolicy(Backoff(initial=0.1, maximum=30.0, jitter=0.5))
"""An integration handler that fails: 0.1 s doubling to 30 s, until it succeeds (its runner
never goes past an event whose effect failed)."""


def handler_policy(retries: int, retry_delay: float) -> RetryPolicy:
    """A projection's handler that fails: ``retries`` retries from ``retry_delay`` seconds,
    doubling, capped at 30 s (or ``retry_delay`` when larger), with jitter."""
    return RetryPolicy(
        Backoff(initial=retry_delay, maximum=max(30.0, retry_delay), jitter=0.5),
        attempts=retries,
    )


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerStatus:
    """A breaker's state for health and metrics."""

    state: BreakerState
    failures: int
    """Consecutive failures counted (reset by a success)."""
    opened: int
    """How many times the breaker opened since it was made."""
    retry_in: float
    """Seconds until an open breaker lets a trial call through (0 unless open)."""
    last_error: str | None


class CircuitBreaker:
    """Stops calling a dependency that keeps failing, and tries it again now and then.

    ::

                 failure_threshold consecutive failures
        CLOSED ──────────────────────────────────────────▶ OPEN
          ▲                                                 │  the reset delay passed
          │ the trial call succeeds                         ▼
          └──────────────────────────────────────────── HALF_OPEN ──▶ OPEN (the trial fails;
                                                                  the next delay grows)

    Callers ask ``allow()`` before a call and report the outcome with ``success()`` or
    ``failure(error)``. While OPEN, ``allow()`` is False until the reset delay has passed;
    then the breaker is HALF_OPEN and lets calls through until one outcome decides. The
    reset delay follows ``backoff`` across consecutive trials that fail.

    With ``single_trial=True`` (for a dependency that many concurrent requests would all
    wait on, like a cache that hangs), HALF_OPEN lets ONE call through; the others are
    refused as if the breaker were open, until that trial reports. A trial that never
    reports (its caller was cancelled) is replaced after another reset delay.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        single_trial: bool = False,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be 1 or more")
        self.failure_threshold = failure_threshold
        self.single_trial = single_trial
        self._trial_until: float | None = None
        self.backoff = backoff or Backoff(initial=1.0, maximum=30.0)
        self._clock = clock
        self._rng = rng
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._trials_failed = 0
        self._opened = 0
        self._open_until = 0.0
        self._last_error: str | None = None

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._open_until:
            self._state = BreakerState.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """May a call go through now?"""
        state = self.state
        if state is BreakerState.OPEN:
            return False
        if state is BreakerState.HALF_OPEN and self.single_trial:
            now = self._clock()
            if self._trial_until is not None and now < self._trial_until:
                return False  # one trial at a time
            self._trial_until = now + self.backoff.ceiling(self._trials_failed)
        return True

    def retry_in(self) -> float:
        """Seconds until ``allow()`` turns True (0 when it is True now)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._trials_failed = 0
        self._last_error = None
        self._trial_until = None

    def failure(self, error: BaseException | str) -> None:
        self._last_error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self._failures += 1
        state = self.state
        if state is BreakerState.HALF_OPEN:
            self._trials_failed += 1
            self._open()
        elif state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
            self._open()

    def _open(self) -> None:
        self._trial_until = None
        self._state = BreakerState.OPEN
        self._opened += 1
        self._open_until = self._clock() + self.backoff.delay(self._trials_failed, self._rng)

    def status(self) -> BreakerStatus:
        return BreakerStatus(
            state=self.state,
            failures=self._failures,
            opened=self._opened,
            retry_in=self.retry_in(),
            last_error=self._last_error,
        )

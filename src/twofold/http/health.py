"""``GET /health``: where every projection stands, and whether the service keeps up;
``GET /health/live`` and ``GET /health/ready`` for orchestrators (Kubernetes probes).

- ``/health/live``: 200 whenever the process answers (it touches no store): restart the
  process only when this fails.
- ``/health/ready``: 200 when both stores answer and no projection is stopped or refused;
  503 otherwise (take the process out of the load balancer, do not restart it).

Read from the read store's bookkeeping and the event store's head (``Operations.status``,
which the CLI and the admin API show too), so every worker process answers the same
whichever of them runs the projections.

- DOWN (503): a projection is stopped, refuses views of another event store (``refused``),
  or its oldest unapplied event has waited longer than the threshold.
- DEGRADED (200): a projection retries (``retrying``, with its attempts and last error),
  has parked events (``parked``, with the last parking's error), is paused by an operator
  (``paused``), or no process runs it (``unassigned``: TWOFOLD_PROJECTIONS=off everywhere,
  and no worker); a circuit breaker of the answering process is open; its last scheduled
  verification found the views diverging from the log; or the cache (``TWOFOLD_CACHE``) is
  away or behind in the process that answered: queries then answer from the read store,
  so a cache never makes the service DOWN.
- UP (200) otherwise.

With ``TWOFOLD_BUS``, ``relays`` shows each destination's relay: its lag in events and
seconds, its state (``running``, ``retrying``, ``waiting`` in a process that does not hold
its lease) and, in the process that runs it, its breaker. A relay retrying (the broker
away, the breaker open) or with parked messages makes the service DEGRADED, never DOWN:
commands are still accepted, the log is the queue.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from typing import Literal

import msgspec

from twofold.application.app import App
from twofold.application.cache import CacheState
from twofold.application.operations import (
    Attended,
    BreakerReport,
    Level,
    ProjectionReport,
    worst,
)
from twofold.application.verify import VerifyReport

__all__ = [
    "Attended",
    "CacheHealth",
    "Health",
    "Liveness",
    "ProjectionHealth",
    "Readiness",
    "RelayHealth",
    "StoreCheck",
    "check_health",
    "check_ready",
]

READY_TIMEOUT = 5.0
"""Seconds a store may take to answer the readiness check before it counts as down."""

ProjectionHealth = ProjectionReport
"""One projection in ``/health`` (``Operations.status`` reports the same)."""


class RelayHealth(msgspec.Struct, frozen=True, kw_only=True):
    destination: str
    active: bool
    """Whether the process that answered runs this relay (holds its lease)."""
    state: str
    checkpoint: int
    lag_events: int
    lag_seconds: float
    parked: int
    breaker: str | None
    """closed, open or half_open where the relay runs; None in the other processes."""
    error: str | None = None


class CacheHealth(msgspec.Struct, frozen=True, kw_only=True):
    """The cache in front of the views, as the process that answered sees it."""

    status: Literal["UP", "DEGRADED"]
    """DEGRADED: the cache is away, slow or behind; answers come from the read store."""
    detail: str
    counters: dict[str, int]
    """This process's counters since it started: hits, local_hits, misses, loads, stores,
    refused_older, invalidations, fallbacks, errors (docs/cache.md)."""


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: Level
    head_position: int
    lag_threshold_seconds: float
    runs_projections: bool
    """Whether the process that answered runs the projections (one process does)."""
    process_id: int
    """The worker process that answered."""
    projections: list[ProjectionReport]
    relays: list[RelayHealth] = msgspec.field(default_factory=list)
    cache: CacheHealth | None = None
    """The cache (TWOFOLD_CACHE); absent without one."""
    breakers: list[BreakerReport] = msgspec.field(default_factory=list)
    """This process's circuit breakers; one open (or half open) makes it DEGRADED."""
    verify: VerifyReport | None = None
    """The last verification this process ran (TWOFOLD_VERIFY_INTERVAL), if any: a
    divergence makes it DEGRADED."""


async def check_health(
    app: App,
    *,
    threshold: float,
    runs_projections: bool,
    attended: Attended | None = None,
) -> Health:
    """The service's health; ``attended`` tells whether a projection runs anywhere (None:
    assume it does)."""
    reports, head = await app.operations.status_at(
        attended=attended if attended is not None else _assumed, threshold=threshold
    )
    overall: Level = "UP"
    for projection in reports:
        overall = worst(overall, projection.level)
    relays: list[RelayHealth] = []
    for report in await app.relay_status():
        if report.state == "retrying" or report.breaker not in (None, "closed") or report.parked:
            overall = worst(overall, "DEGRADED")
        relays.append(
            RelayHealth(
                destination=report.destination,
                active=report.active,
                state=report.state,
                checkpoint=report.checkpoint,
                lag_events=report.lag_events,
                lag_seconds=report.lag_seconds,
                parked=report.parked,
                breaker=report.breaker,
                error=report.last_error,
            )
        )
    cache: CacheHealth | None = None
    if app.cache is not None:
        seen = app.cache.status()
        cache = CacheHealth(
            status="UP" if seen.state is CacheState.UP else "DEGRADED",
            detail=seen.detail,
            counters=app.cache.metrics.as_dict(),
        )
        if cache.status == "DEGRADED":
            overall = worst(overall, "DEGRADED")
    breakers = app.operations.breakers()
    if any(b.state != "closed" for b in breakers):
        overall = worst(overall, "DEGRADED")
    verified = app.operations.last_verify
    if verified is not None and not verified.consistent:
        overall = worst(overall, "DEGRADED")
    return Health(
        status=overall,
        relays=relays,
        head_position=head,
        lag_threshold_seconds=threshold,
        runs_projections=runs_projections,
        process_id=os.getpid(),
        projections=reports,
        cache=cache,
        breakers=breakers,
        verify=verified,
    )


async def _assumed(_: str) -> bool:
    return True


class Liveness(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["UP"] = "UP"
    process_id: int


class StoreCheck(msgspec.Struct, frozen=True, kw_only=True):
    name: Literal["event_store", "read_store"]
    status: Literal["UP", "DOWN"]
    error: str | None = None
    """Why it is down."""


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["UP", "DOWN"]
    stores: list[StoreCheck]
    stopped: list[str]
    """Projections stopped or refusing their views (``/health`` says why)."""
    process_id: int


def liveness() -> Liveness:
    return Liveness(process_id=os.getpid())


async def check_ready(app: App, *, timeout: float = READY_TIMEOUT) -> Readiness:
    """Whether this process can serve: both stores answer within ``timeout`` seconds and
    no projection is stopped or refused."""
    stores = [
        await _probe("event_store", app.event_store.head_position(), timeout),
        await _probe("read_store", app.read_store.states(), timeout),
    ]
    stopped: list[str] = []
    if all(check.status == "UP" for check in stores):
        reports = await app.operations.status(attended=_assumed)
        stopped = [r.name for r in reports if r.status in ("stopped", "refused")]
    up = all(check.status == "UP" for check in stores) and not stopped
    return Readiness(
        status="UP" if up else "DOWN", stores=stores, stopped=stopped, process_id=os.getpid()
    )


async def _probe(
    name: Literal["event_store", "read_store"], call: Awaitable[object], timeout: float
) -> StoreCheck:
    try:
        await asyncio.wait_for(call, timeout)
    except TimeoutError:
        return StoreCheck(name=name, status="DOWN", error=f"no answer within {timeout}s")
    except Exception as error:
        return StoreCheck(name=name, status="DOWN", error=f"{type(error).__name__}: {error}")
    return StoreCheck(name=name, status="UP")

"""``GET /health``: where every projection stands, and whether the service keeps up.

Read from the read store's bookkeeping and the event store's head, so every worker
process answers the same whichever of them runs the projections.

- DOWN (503): a projection is stopped, refuses views of another event store (``refused``),
  or its oldest unapplied event has waited longer than the threshold.
- DEGRADED (200): a projection retries (``retrying``, with its attempts and last error),
  has parked events (``parked``, with the last parking's error), or no process runs it
  (``unassigned``: TWOFOLD_PROJECTIONS=off everywhere, and no worker); or the cache
  (``TWOFOLD_CACHE``) is away or behind in the process that answered: queries then answer
  from the read store, so a cache never makes the service DOWN.
- UP (200) otherwise.

With ``TWOFOLD_BUS``, ``relays`` shows each destination's relay: its lag in events and
seconds, its state (``running``, ``retrying``, ``waiting`` in a process that does not hold
its lease) and, in the process that runs it, its breaker. A relay retrying (the broker
away, the breaker open) or with parked messages makes the service DEGRADED, never DOWN:
commands are still accepted, the log is the queue.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

import msgspec

from twofold.application.app import App
from twofold.application.cache import CacheState
from twofold.application.runner import foreign_views
from twofold.application.views import ProjectionStatus
from twofold.errors import ForeignViewsError

__all__ = ["Attended", "CacheHealth", "Health", "ProjectionHealth", "RelayHealth", "check_health"]

Attended = Callable[[str], Awaitable[bool]]
"""``attended(projection)``: whether some process runs the projection now."""

Level = Literal["UP", "DEGRADED", "DOWN"]
Status = Literal["running", "retrying", "stopped", "refused", "rebuilding", "unassigned"]
_RANK: dict[Level, int] = {"UP": 0, "DEGRADED": 1, "DOWN": 2}
UNASSIGNED = (
    "no process runs this projection (TWOFOLD_PROJECTIONS=off here and no other process "
    "runs it): its views do not change; run one process with TWOFOLD_PROJECTIONS=run, or "
    "`twofold worker` on PostgreSQL"
)


class ProjectionHealth(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    status: Status
    position: int
    """The projection's checkpoint: the last log position its views reflect."""
    lag_events: int
    """Events in the log after the checkpoint."""
    lag_seconds: float
    """How long the oldest of those events has waited; 0 when caught up."""
    attempts: int = 0
    """Failed attempts in a row while retrying."""
    parked: int = 0
    """Events in the dead letters (App.dead_letters lists them)."""
    error: str | None = None
    """Why it retries, stopped or refuses; with parked events, the last parking's error."""


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
    projections: list[ProjectionHealth]
    relays: list[RelayHealth] = msgspec.field(default_factory=list)
    cache: CacheHealth | None = None
    """The cache (TWOFOLD_CACHE); absent without one."""


async def check_health(
    app: App,
    *,
    threshold: float,
    runs_projections: bool,
    attended: Attended | None = None,
) -> Health:
    """The service's health; ``attended`` tells whether a projection runs anywhere (None:
    assume it does)."""
    states = await app.read_store.states()
    # Read after the checkpoints, so a checkpoint is never above it unless it is foreign.
    head = await app.event_store.head_position()
    identity = await app.event_store.identity()
    now = datetime.now(UTC)
    reports: list[ProjectionHealth] = []
    overall: Level = "UP"
    for state in states:
        if state.name not in app.runners:
            continue  # bookkeeping of a projection this service no longer declares
        lag_events = max(0, head - state.checkpoint)
        lag_seconds = 0.0
        if lag_events:
            oldest = await app.event_store.read_all(after=state.checkpoint, limit=1)
            if oldest:
                recorded = oldest[0].recorded_at
                if recorded.tzinfo is None:
                    recorded = recorded.replace(tzinfo=UTC)
                lag_seconds = round(max(0.0, (now - recorded).total_seconds()), 3)
        status: Status = state.status.value
        error = state.error
        level: Level = "UP"
        foreign = foreign_views(state.event_store, identity, state.checkpoint, head)
        if foreign is not None:
            status, error, level = "refused", str(ForeignViewsError(state.name, foreign)), "DOWN"
        elif state.status is ProjectionStatus.STOPPED or lag_seconds > threshold:
            level = "DOWN"
        elif state.status is ProjectionStatus.RETRYING or state.parked:
            level = "DEGRADED"
        if (
            status in ("running", "retrying")
            and attended is not None
            and not app.positions.is_inline(state.name)
            and not await attended(state.name)
        ):
            status, error = "unassigned", UNASSIGNED
            level = _worst(level, "DEGRADED")
        overall = _worst(overall, level)
        reports.append(
            ProjectionHealth(
                name=state.name,
                status=status,
                position=state.checkpoint,
                lag_events=lag_events,
                lag_seconds=lag_seconds,
                attempts=state.attempts if status == "retrying" else 0,
                parked=state.parked,
                error=error,
            )
        )
    relays: list[RelayHealth] = []
    for report in await app.relay_status():
        if report.state == "retrying" or report.breaker not in (None, "closed") or report.parked:
            overall = _worst(overall, "DEGRADED")
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
            overall = _worst(overall, "DEGRADED")
    return Health(
        status=overall,
        relays=relays,
        head_position=head,
        lag_threshold_seconds=threshold,
        runs_projections=runs_projections,
        process_id=os.getpid(),
        projections=reports,
        cache=cache,
    )


def _worst(a: Level, b: Level) -> Level:
    return a if _RANK[a] >= _RANK[b] else b

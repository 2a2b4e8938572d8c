"""``GET /health``: where every projection stands, and whether the service keeps up.

Read from the read store's bookkeeping and the event store's head, so every worker
process answers the same whichever of them runs the projections. DOWN (503) when a
projection is stopped or its oldest unapplied event has waited longer than the threshold.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Literal

import msgspec

from twofold.application.app import App
from twofold.application.views import ProjectionStatus

__all__ = ["Health", "ProjectionHealth", "check_health"]


class ProjectionHealth(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    status: Literal["running", "stopped", "rebuilding"]
    position: int
    """The projection's checkpoint: the last log position its views reflect."""
    lag_events: int
    """Events in the log after the checkpoint."""
    lag_seconds: float
    """How long the oldest of those events has waited; 0 when caught up."""
    error: str | None = None


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["UP", "DOWN"]
    head_position: int
    lag_threshold_seconds: float
    runs_projections: bool
    """Whether the process that answered runs the projections (one process does)."""
    process_id: int
    """The worker process that answered."""
    projections: list[ProjectionHealth]


async def check_health(app: App, *, threshold: float, runs_projections: bool) -> Health:
    head = await app.event_store.head_position()
    now = datetime.now(UTC)
    reports: list[ProjectionHealth] = []
    up = True
    for state in await app.read_store.states():
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
        stopped = state.status is ProjectionStatus.STOPPED
        if stopped or lag_seconds > threshold:
            up = False
        reports.append(
            ProjectionHealth(
                name=state.name,
                status=state.status.value,
                position=state.checkpoint,
                lag_events=lag_events,
                lag_seconds=lag_seconds,
                error=state.error,
            )
        )
    return Health(
        status="UP" if up else "DOWN",
        head_position=head,
        lag_threshold_seconds=threshold,
        runs_projections=runs_projections,
        process_id=os.getpid(),
        projections=reports,
    )

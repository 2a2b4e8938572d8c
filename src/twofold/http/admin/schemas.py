"""The admin API's request and answer bodies: they decode requests strictly and are the
OpenAPI schemas, so the document and the code cannot drift apart."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from twofold.application.operations import BreakerReport, ProjectionReport
from twofold.application.verify import VerifyReport
from twofold.http.admin.jobs import Job
from twofold.http.health import CacheHealth, RelayHealth
from twofold.records import StreamInfo

__all__ = [
    "ActionDone",
    "DeadLetterOut",
    "DeadLetters",
    "EventOut",
    "EventsFound",
    "Overview",
    "Projections",
    "Rate",
    "Released",
    "RetryBody",
    "SkipBody",
    "StreamEvents",
    "Streams",
    "VerifyBody",
    "VerifyOut",
]

Position = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
StreamId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=1000,
        pattern="^[^\\u0000]+$",
        description="A stream id (no store holds NUL)",
    ),
]
ProjectionName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern="^[a-z_][a-z0-9_]*$",
        description="A projection's name: a lower-case identifier",
    ),
]


class RetryBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which parked events to apply again: one stream's, or (no stream_id) all."""

    stream_id: StreamId | None = None


class SkipBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which parked events to drop: one stream's, those at ``positions``, or (neither) all."""

    stream_id: StreamId | None = None
    positions: Annotated[list[Position], msgspec.Meta(min_length=1, max_length=10_000)] | None = (
        None
    )


class VerifyBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The projection to verify (none: every one)."""

    projection: ProjectionName | None = None


class Projections(msgspec.Struct, frozen=True, kw_only=True):
    head_position: int
    """The log's head the lags were measured against."""
    projections: list[ProjectionReport]


class ActionDone(msgspec.Struct, frozen=True, kw_only=True):
    """A pause, resume or reset was stored; the process that runs the projection acts on it."""

    projection: str
    action: Literal["pause", "resume", "reset"]
    taken: bool | None
    """Pause and resume: whether the process that runs the projection took it within 10
    seconds (false: it takes it at its next look at the stored state); null for reset."""
    status: ProjectionReport
    """Where the projection stands right after."""


class EventOut(msgspec.Struct, frozen=True, kw_only=True):
    """A recorded event with its data and metadata decoded."""

    event_id: str
    stream_id: str
    stream_version: int
    position: int
    type: str
    schema_version: int
    recorded_at: str
    data: Any
    metadata: dict[str, Any]
    """``correlation_id``, ``causation_id``, ``actor`` and any other keys."""


class DeadLetterOut(msgspec.Struct, frozen=True, kw_only=True):
    projection: str
    position: int
    stream_id: str
    error: str
    parked_at: str
    event: EventOut


class DeadLetters(msgspec.Struct, frozen=True, kw_only=True):
    dead_letters: list[DeadLetterOut]
    """By projection, then stream, in stream order."""


class Released(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of a retry or a skip."""

    projection: str
    stream_id: str | None
    applied: int = 0
    """Retry: events applied (a stream that still fails stays parked)."""
    skipped: int = 0
    """Skip: events dropped without being applied."""
    remaining: int
    """Events of the projection still parked."""


class Streams(msgspec.Struct, frozen=True, kw_only=True):
    streams: list[StreamInfo]
    next_after: str | None
    """Pass as ``after`` for the next page; null on the last page."""


class StreamEvents(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    version: int
    """The stream's current version."""
    events: list[EventOut]
    next_from_version: int | None
    """Pass as ``from_version`` for the next page; null on the last page."""


class EventsFound(msgspec.Struct, frozen=True, kw_only=True):
    events: list[EventOut]
    scanned: int
    """Events of the log read to answer."""
    complete: bool
    """Whether that was the whole log (otherwise the newest ``scanned`` events)."""


class VerifyOut(msgspec.Struct, frozen=True, kw_only=True):
    consistent: bool
    report: VerifyReport


class Rate(msgspec.Struct, frozen=True, kw_only=True):
    """Commands or queries handled: a total, a rate and a latency percentile."""

    total: int | None
    """Handled since the server started (all workers); null when not measured."""
    per_second: float | None
    """Over the time since the previous overview (at most the last minute); null on the
    first call."""
    p99_seconds: float | None
    """The 99th percentile of their duration (from histogram buckets); null when none."""


class Overview(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["UP", "DEGRADED", "DOWN"]
    head_position: int
    process_id: int
    """The worker process that answered."""
    projections: int
    parked: int
    """Events parked over all projections."""
    commands: Rate
    queries: Rate
    figures: str
    """Where the figures come from."""
    rebuilds: list[Job]
    """Rebuild jobs of the process that answered."""
    breakers: list[BreakerReport]
    """The answering process's circuit breakers (as /health)."""
    relays: list[RelayHealth]
    """The relays to TWOFOLD_BUS's destinations (as /health); empty without a bus."""
    cache: CacheHealth | None
    """The cache in front of the views (as /health); null without TWOFOLD_CACHE."""

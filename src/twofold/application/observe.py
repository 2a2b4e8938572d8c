"""What twofold measures of itself: commands as they run, projections as they stand.

- ``ObserveCommands``, the outermost command middleware: times each command by type (the
  histogram's count counts them), counts its errors by type, opens its span and writes the
  span's trace context into the command's metadata (so every event it records carries it,
  under ``TRACEPARENT``).
- ``ProjectionGauges``, a scrape callback: each projection's position, lag in events and
  in seconds (the age of the oldest event it has not applied yet), parked events and
  status, read from the stores when ``/metrics`` is read, so every worker answers alike
  whichever process runs the projections.

Appends are measured by the Repository, queries by the QueryBus, applying by the runners.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime

from twofold.application.commands import CommandEnvelope, CommandResult, Next
from twofold.application.metrics import HistogramChild, Metrics, Scrape
from twofold.application.ports import EventStore
from twofold.application.positions import lag_behind
from twofold.application.runner import foreign_views
from twofold.application.tracing import TRACEPARENT, Tracer
from twofold.application.views import ProjectionStatus, ReadStore

__all__ = ["ObserveCommands", "ProjectionGauges"]


class ObserveCommands:
    """Command middleware: ``twofold_command_duration_seconds`` (its ``_count``: the
    commands handled) and ``twofold_command_errors_total`` by command type, and a span per
    dispatch."""

    def __init__(self, metrics: Metrics, tracer: Tracer) -> None:
        self._tracer = tracer
        self._failed = metrics.counter(
            "twofold_command_errors_total",
            "Commands that failed, by command type and error type.",
            labels=("command", "error"),
        )
        self._duration = metrics.histogram(
            "twofold_command_duration_seconds",
            "Time to dispatch a command (middleware, handler and append), by command type; "
            "its _count counts the commands handled, errors included.",
            labels=("command",),
        )
        self._children: dict[type, tuple[HistogramChild, str]] = {}

    def _for(self, command_type: type) -> tuple[HistogramChild, str]:
        found = self._children.get(command_type)
        if found is None:
            name = command_type.__name__
            found = (self._duration.labels(name), name)
            self._children[command_type] = found
        return found

    async def __call__(self, envelope: CommandEnvelope, call_next: Next) -> CommandResult:
        duration, name = self._for(type(envelope.command))
        started = time.perf_counter()
        try:
            if self._tracer.enabled:
                return await self._traced(envelope, call_next, name)
            return await call_next(envelope)
        except Exception as error:
            self._failed.labels(name, type(error).__name__).inc()
            raise
        finally:
            duration.observe(time.perf_counter() - started)

    async def _traced(self, envelope: CommandEnvelope, call_next: Next, name: str) -> CommandResult:
        with self._tracer.span(
            f"command {name}", attributes={"twofold.command.type": name}
        ) as span:
            carrier: dict[str, str] = {}
            self._tracer.inject(carrier)
            if carrier.get(TRACEPARENT):
                metadata = envelope.metadata
                extra = {**metadata.extra, **carrier}
                envelope.metadata = dataclasses.replace(metadata, extra=extra)
            result = await call_next(envelope)
            span.set_attribute("twofold.stream_id", result.stream_id)
            span.set_attribute("twofold.position", result.position)
            return result


@dataclasses.dataclass(frozen=True)
class ProjectionGauges:
    """A scrape callback reporting where every projection stands (see the module doc)."""

    event_store: EventStore
    read_store: ReadStore
    projections: Callable[[], list[str]]
    """The names of the service's projections (bookkeeping of others is left out)."""

    async def __call__(self, scrape: Scrape) -> None:
        states = await self.read_store.states()
        head = await self.event_store.head_position()  # after the checkpoints: never below
        identity = await self.event_store.identity()
        scrape.gauge(
            "twofold_log_head_position", "Position of the last event in the log.", float(head)
        )
        known = set(self.projections())
        now = datetime.now(UTC)
        for state in states:
            if state.name not in known:
                continue
            name = {"projection": state.name}
            status = state.status
            if foreign_views(state.event_store, identity, state.checkpoint, head) is not None:
                status = ProjectionStatus.REFUSED
            lag_events, lag_seconds = await lag_behind(
                self.event_store, state.checkpoint, head, now
            )
            scrape.gauge(
                "twofold_projection_position",
                "The last log position the projection's views reflect (its checkpoint).",
                float(state.checkpoint),
                name,
            )
            scrape.gauge(
                "twofold_projection_lag_events",
                "Events in the log after the projection's checkpoint.",
                float(lag_events),
                name,
            )
            scrape.gauge(
                "twofold_projection_lag_seconds",
                "Age of the oldest event the projection has not applied yet; 0 when caught up.",
                lag_seconds,
                name,
            )
            scrape.gauge(
                "twofold_projection_parked_events",
                "Events parked as dead letters (retry or skip them).",
                float(state.parked),
                name,
            )
            for each in ProjectionStatus:
                scrape.gauge(
                    "twofold_projection_status",
                    "1 for the projection's current status, 0 for the others.",
                    1.0 if status is each else 0.0,
                    {"projection": state.name, "status": each.value},
                )

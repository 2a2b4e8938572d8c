"""Every operation on a running twofold, in one place: the CLI, the admin API and the
dashboard only call these and show the answers.

``Operations(app)`` (or ``app.operations``) works in any process that opened the same
stores, not only in the one that runs the projections: what it changes is stored in the
read store's bookkeeping, and the process that runs a projection notices (its runner looks
at the stored state after each batch and every ``CONTROL_INTERVAL`` seconds while idle):

- ``pause``/``resume`` store a flag; the runner stops applying at its next look, and
  goes on where it stopped once resumed.
- ``retry``/``skip`` of dead letters apply (or drop) the parked events in the process
  that asks, in one transaction with the removal of the dead letters, and move the
  projection's revision; the runner then reloads its parked streams, so a stream released
  from another process is applied again from its next event on.
- ``rebuild`` fills a new copy here, beside the live one, and switches; ``reset`` switches
  to an empty copy. The runner sees the switch (its next commit is refused, or its next
  look finds another copy) and reloads.

The App must be started (``App.start``; with ``TWOFOLD_PROJECTIONS=off`` it runs nothing
and leaves the projections to the server).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from twofold.application.metrics import Metrics
from twofold.application.positions import lag_behind
from twofold.application.runner import ProjectionRunner, foreign_views
from twofold.application.verify import VerifyReport, verify_projection
from twofold.application.views import DeadLetter, ProjectionStatus
from twofold.errors import ForeignViewsError, ValidationError
from twofold.records import RecordedEvent, StreamInfo

if TYPE_CHECKING:
    from twofold.application.app import App

__all__ = [
    "Attended",
    "BreakerReport",
    "Level",
    "Operations",
    "ProgressCallback",
    "ProjectionReport",
    "ReportStatus",
    "decode_event",
]

log = logging.getLogger("twofold.operations")

Attended = Callable[[str], Awaitable[bool]]
"""``attended(projection)``: whether some process runs the projection now."""
ProgressCallback = Callable[[int, int], None]
"""``progress(done_events, total_events)``, called as a rebuild goes."""
Level = Literal["UP", "DEGRADED", "DOWN"]
ReportStatus = Literal[
    "running", "retrying", "stopped", "refused", "rebuilding", "unassigned", "paused"
]
RANK: dict[Level, int] = {"UP": 0, "DEGRADED": 1, "DOWN": 2}
UNASSIGNED = (
    "no process runs this projection (TWOFOLD_PROJECTIONS=off here and no other process "
    "runs it): its views do not change; run one process with TWOFOLD_PROJECTIONS=run, or "
    "`twofold worker` on PostgreSQL"
)
PAUSED = "paused by an operator: nothing is applied until it is resumed"
PAUSING = "an operator asked for a pause; its runner stops at its next look"
_DEGRADED = frozenset({ProjectionStatus.RETRYING, ProjectionStatus.PAUSED})
SETTLE_POLL = 0.05
"""Seconds between looks at the stored state while ``pause``/``resume`` wait for the
runner to act on them."""
STREAM_PAGE = 100
"""Default and ceiling of a page of streams or events."""
_MAX_PAGE = 1000


class ProjectionReport(msgspec.Struct, frozen=True, kw_only=True):
    """Where one projection stands (``Operations.status``; ``/health`` shows the same)."""

    name: str
    status: ReportStatus
    level: Level
    """UP; DEGRADED (retrying, parked events, paused, unassigned); DOWN (stopped, refused,
    or its oldest unapplied event waited longer than the lag threshold)."""
    position: int
    """The projection's checkpoint: the last log position its views reflect."""
    lag_events: int
    """Events in the log after the checkpoint."""
    lag_seconds: float
    """How long the oldest of those events has waited; 0 when caught up."""
    attempts: int = 0
    """Failed attempts in a row while retrying."""
    parked: int = 0
    """Events in the dead letters (``Operations.dead_letters`` lists them)."""
    error: str | None = None
    """Why it retries, stopped or refuses; with parked events, the last parking's error."""
    paused: bool = False
    """An operator paused it."""
    inline: bool = False
    """Applied in the append's own transaction (single-database mode): never behind."""


class BreakerReport(msgspec.Struct, frozen=True, kw_only=True):
    """One circuit breaker of this process (``Operations.breakers``)."""

    name: str
    state: Literal["closed", "open", "half_open"]
    failures: int
    """Consecutive failures counted (a success resets them)."""
    opened: int
    """How many times it opened since the process started."""
    retry_in: float
    """Seconds until an open breaker lets a trial call through."""
    last_error: str | None = None


def worst(a: Level, b: Level) -> Level:
    return a if RANK[a] >= RANK[b] else b


class Operations:
    """The operations on ``app``'s projections, dead letters, streams and views."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.last_verify: VerifyReport | None = None
        """The last verification's report, in this process (scheduled or asked for)."""
        self._verified = VerifyFigures(app.metrics)

    # -- status ---------------------------------------------------------------------------

    async def status(
        self, *, attended: Attended | None = None, threshold: float | None = None
    ) -> list[ProjectionReport]:
        """Every projection, by name. ``attended`` tells whether a projection runs in
        some process (default: ask the app's coordination); ``threshold``: seconds of lag
        that make a projection DOWN (default: the settings' TWOFOLD_LAG_THRESHOLD)."""
        reports, _ = await self.status_at(attended=attended, threshold=threshold)
        return reports

    async def status_at(
        self, *, attended: Attended | None = None, threshold: float | None = None
    ) -> tuple[list[ProjectionReport], int]:
        """``status``, and the head of the log it was measured against."""
        app = self.app
        attended = attended if attended is not None else app.attended
        limit = threshold if threshold is not None else app.settings.lag_threshold
        states = await app.read_store.states()
        # Read after the checkpoints, so a checkpoint is never above it unless it is foreign.
        head = await app.event_store.head_position()
        identity = await app.event_store.identity()
        now = datetime.now(UTC)
        reports: list[ProjectionReport] = []
        for state in states:
            if state.name not in app.runners:
                continue  # bookkeeping of a projection this service no longer declares
            inline = app.positions.is_inline(state.name)
            lag_events, waited = await lag_behind(app.event_store, state.checkpoint, head, now)
            lag_seconds = round(waited, 3)
            status: ReportStatus = state.status.value
            error = state.error
            level: Level = "UP"
            foreign = foreign_views(state.event_store, identity, state.checkpoint, head)
            if foreign is not None:
                error = str(ForeignViewsError(state.name, foreign))
                status, level = "refused", "DOWN"
            elif state.status is ProjectionStatus.STOPPED or lag_seconds > limit:
                level = "DOWN"
            elif state.status in _DEGRADED or state.parked or state.paused:
                level = "DEGRADED"
            if state.paused and status in ("running", "retrying"):
                error = PAUSING  # asked; its runner has not stopped applying yet
            elif status == "paused":
                error = PAUSED
            if (
                status in ("running", "retrying", "paused")
                and not inline
                and not await attended(state.name)
            ):
                status, error = "unassigned", UNASSIGNED
                level = worst(level, "DEGRADED")
            reports.append(
                ProjectionReport(
                    name=state.name,
                    status=status,
                    level=level,
                    position=state.checkpoint,
                    lag_events=lag_events,
                    lag_seconds=lag_seconds,
                    attempts=state.attempts if status == "retrying" else 0,
                    parked=state.parked,
                    error=error,
                    paused=state.paused,
                    inline=inline,
                )
            )
        return reports, head

    def breakers(self) -> list[BreakerReport]:
        """This process's circuit breakers: open or half open makes health DEGRADED."""
        reports: list[BreakerReport] = []
        for name, breaker in self.app.breakers.items():
            status = breaker.status()
            reports.append(
                BreakerReport(
                    name=name,
                    state=status.state.value,
                    failures=status.failures,
                    opened=status.opened,
                    retry_in=round(status.retry_in, 3),
                    last_error=status.last_error,
                )
            )
        return reports

    # -- rebuild, reset, pause ------------------------------------------------------------

    def names(self, name: str | None = None) -> list[str]:
        """``[name]`` (checked), or every projection's name, sorted."""
        if name is not None:
            self.app.runner(name)  # an unknown name fails here, naming the known ones
            return [name]
        return sorted(self.app.runners)

    async def rebuild(self, name: str, progress: ProgressCallback | None = None) -> int:
        """Replay the whole log into a fresh copy of ``name``'s views while the live copy
        serves, then switch (blue/green); the process running the projection picks the new
        copy up. ``progress(done_events, total_events)`` is called as it goes. Returns the
        new copy's checkpoint."""
        return await self.app.rebuild(name, progress=progress)

    async def rebuild_all(
        self, progress: Callable[[str, int, int], None] | None = None
    ) -> dict[str, int]:
        """Rebuild every projection, one after the other; ``progress(name, done, total)``."""
        done: dict[str, int] = {}
        for name in self.names():
            step: ProgressCallback | None = None
            if progress is not None:
                step = _named(progress, name)
            done[name] = await self.rebuild(name, progress=step)
        return done

    async def reset(self, name: str) -> None:
        """Empty ``name``'s views and set its checkpoint to 0 (not blue/green: queries see
        the views fill up again); the process running it replays the log from the start."""
        runner = self._runner(name, "reset")
        await runner.reset()

    async def pause(self, name: str, *, wait: float = 10.0) -> bool:
        """Stop applying events to ``name``'s views (in whichever process runs it) until
        ``resume``; queries keep reading them as they are. Waits up to ``wait`` seconds
        for the runner to stop (0: do not wait); True once it has stopped, or when no
        process runs the projection (then nothing applies it anyway)."""
        runner = self._runner(name, "pause")
        await self.app.read_store.set_paused(name, True)
        runner.poke()
        return await self._settled(name, paused=True, wait=wait)

    async def resume(self, name: str, *, wait: float = 10.0) -> bool:
        """Go on applying ``name``'s events from where it paused. Waits up to ``wait``
        seconds for the runner to go on; True once it has (or no process runs it)."""
        runner = self._runner(name, "resume")
        await self.app.read_store.set_paused(name, False)
        runner.poke()
        return await self._settled(name, paused=False, wait=wait)

    async def _settled(self, name: str, *, paused: bool, wait: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            state = await self.app.read_store.state(name)
            if (state.status is ProjectionStatus.PAUSED) == paused:
                return True
            if state.status is ProjectionStatus.STOPPED:
                return True  # it applies nothing either way; the flag waits for a rebuild
            if not await self.app.attended(name):
                return True  # nobody applies it: the stored request is all there is
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(SETTLE_POLL)

    def _runner(self, name: str, what: str) -> ProjectionRunner:
        runner = self.app.runner(name)
        if self.app.positions.is_inline(name):
            raise ValidationError(
                {
                    "projection": f"{name!r} is applied inline, in each append's transaction "
                    f"(TWOFOLD_INLINE_PROJECTIONS), so there is no runner to {what}; "
                    "rebuild it instead, or run it asynchronously"
                }
            )
        return runner

    async def _current(self, name: str, what: str) -> ProjectionRunner:
        """The runner, with the stored state taken again unless this process runs it (its
        own runner knows the state it writes)."""
        runner = self._runner(name, what)
        if not self.app.coordination.runs(name):
            await runner.refresh()
        return runner

    # -- dead letters ---------------------------------------------------------------------

    async def dead_letters(self, name: str | None = None) -> list[DeadLetter]:
        """The parked events of one projection, or of every one (by name), in log order."""
        letters: list[DeadLetter] = []
        for projection in self.names(name):
            state = await self.app.read_store.state(projection)
            letters.extend(await self.app.read_store.dead_letters(projection, state.generation))
        return letters

    async def dead_letter(self, name: str, position: int) -> DeadLetter:
        """The event ``name`` parked at ``position``; ValidationError if none is."""
        letters = await self.dead_letters(name)
        for letter in letters:
            if letter.position == position:
                return letter
        parked = ", ".join(str(d.position) for d in letters) or "none"
        raise ValidationError(
            {"position": f"no event of projection {name!r} is parked at {position} "
             f"(parked: {parked})"}
        )  # fmt: skip

    async def retry(self, name: str, stream_id: str | None = None) -> int:
        """Apply ``name``'s parked events again (all, or ``stream_id``'s), stream by stream
        in stream order; return how many applied. A stream that still fails stays parked."""
        runner = await self._current(name, "retry")
        return await runner.retry_dead_letters(stream_id)

    async def skip(
        self, name: str, stream_id: str | None = None, positions: Sequence[int] | None = None
    ) -> int:
        """Drop ``name``'s parked events without applying them (all, ``stream_id``'s, or
        those at ``positions``); return how many were dropped."""
        runner = await self._current(name, "skip")
        return await runner.skip_dead_letters(stream_id, positions)

    # -- streams --------------------------------------------------------------------------

    async def streams(self, after: str | None = None, limit: int = STREAM_PAGE) -> list[StreamInfo]:
        """A page of the log's streams in id order: those after ``after``."""
        _check_limit(limit)
        return await self.app.event_store.list_streams(after=after, limit=limit)

    async def stream(
        self, stream_id: str, from_version: int = 1, limit: int = STREAM_PAGE
    ) -> list[RecordedEvent]:
        """A page of ``stream_id``'s events from ``from_version``, with data and metadata
        (correlation and causation ids) as stored (JSON bytes; ``decode_event`` reads them)."""
        _check_limit(limit)
        if from_version < 1:
            raise ValidationError(
                {"from_version": f"versions count from 1, not {from_version}; ask from 1"}
            )
        return await self.app.event_store.read_stream(
            stream_id, from_version=from_version, limit=limit
        )

    # -- verify ---------------------------------------------------------------------------

    async def verify(self, name: str | None = None) -> VerifyReport:
        """Replay the log into a scratch copy of the views (never made active, dropped
        after) and compare it with the live copy at the live copy's checkpoint, collection
        by collection. The report is kept as ``last_verify``."""
        results = []
        for projection in self.names(name):
            results.append(await verify_projection(self.app.runner(projection)))
        report = VerifyReport(checked_at=datetime.now(UTC), projections=results)
        self.last_verify = report
        self._verified.record(report)
        return report

    async def verify_every(self, interval: float) -> None:
        """Verify the projections this process runs every ``interval`` seconds, until
        cancelled (the server does, with TWOFOLD_VERIFY_INTERVAL)."""
        while True:
            await asyncio.sleep(interval)
            names = [n for n in self.names() if self.app.coordination.runs(n)]
            results = []
            for projection in names:
                try:
                    results.append(await verify_projection(self.app.runner(projection)))
                except Exception:
                    log.exception("scheduled verification of %s failed", projection)
            if results:
                self.last_verify = VerifyReport(checked_at=datetime.now(UTC), projections=results)
                self._verified.record(self.last_verify)
                for result in results:
                    if not result.consistent:
                        log.warning("verify: %s", result.summary())


class VerifyFigures:
    """A verification's result as metrics: gauges with aggregate ``last`` (the latest run,
    whichever worker made it) and a count of runs by result."""

    def __init__(self, metrics: Metrics) -> None:
        self._at = metrics.gauge(
            "twofold_verify_last_run_timestamp_seconds",
            "When the last verification finished (Unix time).",
            aggregate="last",
        ).labels()
        self._divergent = metrics.gauge(
            "twofold_verify_divergent_documents",
            "Documents the last verification found missing, extra or different (0 = same).",
            labels=("projection",),
            aggregate="last",
        )
        self._consistent = metrics.gauge(
            "twofold_verify_consistent",
            "1 if the last verification found the views equal to a replay, 0 if not "
            "(divergent, or not verified: see the logs).",
            labels=("projection",),
            aggregate="last",
        )
        self._runs = metrics.counter(
            "twofold_verify_runs_total",
            "Verifications run, by result (clean: every projection the same).",
            labels=("result",),
        )

    def record(self, report: VerifyReport) -> None:
        for projection in report.projections:
            divergent = sum(c.missing + c.extra + c.different for c in projection.collections)
            self._divergent.labels(projection.name).set(divergent)
            self._consistent.labels(projection.name).set(1.0 if projection.consistent else 0.0)
        self._runs.labels("clean" if report.consistent else "divergent").inc()
        self._at.set(report.checked_at.timestamp())


def decode_event(record: RecordedEvent) -> dict[str, Any]:
    """An event as JSON-ready data: its place, type, data and metadata decoded."""
    return {
        "event_id": str(record.event_id),
        "stream_id": record.stream_id,
        "stream_version": record.stream_version,
        "position": record.position,
        "type": record.type,
        "schema_version": record.schema_version,
        "recorded_at": record.recorded_at.isoformat(),
        "data": msgspec.json.decode(record.data),
        "metadata": msgspec.json.decode(record.metadata),
    }


def _named(progress: Callable[[str, int, int], None], name: str) -> ProgressCallback:
    return lambda done, total: progress(name, done, total)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= _MAX_PAGE:
        raise ValidationError({"limit": f"must be between 1 and {_MAX_PAGE}, not {limit}"})

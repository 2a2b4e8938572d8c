"""The projection runner: read the log after the checkpoint, apply in batches, tail live.

Invariant: views and checkpoint commit together (``ReadStore.commit_batch``), so a crash
anywhere replays at most the uncommitted batch and nothing is ever applied twice.

Failure policy, per projection: a failing event is retried ``retries`` times with
exponential backoff; then either the projection stops (``on_error = "stop"``) and reports,
or the event is parked as a dead letter with every later event of its stream
(``on_error = "park"``), so one stream's order is never broken while the others go on.
A failure of the stores themselves (not of a handler) is retried by ``supervise`` with
backoff until it passes. While it retries, the runner says so: status ``retrying``, the
attempts and the last error, stored with the projection so every process reports them
(the transitions are drawn on ``ProjectionStatus``).

Views belong to one event store: the read store records the identity of the event store
each copy is built from. At start, views of another event store, or a checkpoint beyond
the log's head, make the runner refuse to run (status ``refused``) and queries refuse to
read them (ForeignViewsError), until they are rebuilt from this event store.

With a cache (``invalidator``), each commit of the active copy is handed to it right after
the commit, with the documents the batch touched; a switch to another copy (a rebuild
here, or one another process made), and dead letters released, abandon the cache's
entries of the projection; and a runner that starts running abandons them too (with
``force``: it alone commits, and its store may be newer than what the cache remembers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

from twofold.application.cache_invalidation import CacheInvalidator, recording
from twofold.application.failure import (
    STORE_RETRY,
    CircuitBreaker,
    RetryPolicy,
    handler_policy,
)
from twofold.application.metrics import SIZE_BUCKETS, Metrics, NoMetrics
from twofold.application.pages import PageReader
from twofold.application.ports import EventStore
from twofold.application.positions import PositionTracker
from twofold.application.projections import HandlerFailed, Projection, make_apply
from twofold.application.tracing import TRACEPARENT, NoTracer, Tracer
from twofold.application.views import (
    DeadLetter,
    ProjectionState,
    ProjectionStatus,
    ReadStore,
    ViewTransaction,
)
from twofold.codec import Codec
from twofold.errors import (
    ForeignViewsError,
    GenerationChangedError,
    ProjectionStoppedError,
    ValidationError,
)
from twofold.records import RecordedEvent

__all__ = ["ProjectionRunner", "describe_error", "foreign_views"]

log = logging.getLogger("twofold.projections")

RECHECK_INTERVAL = 5.0
"""Seconds between looks at the stored state while stopped or refused (another process
may have rebuilt the views)."""
CONTROL_INTERVAL = 0.5
"""Seconds between a running (or paused) runner's looks at its stored state, for what
operators change from other processes: a pause or resume, dead letters retried or
skipped, a copy switched by a rebuild or reset. A runner also looks after every batch
it commits once this much time has passed, and at once when poked in its own process."""
_HALTED = frozenset({ProjectionStatus.STOPPED, ProjectionStatus.REFUSED})
_ERROR_LENGTH = 2000
_TRACEPARENT = TRACEPARENT.encode()  # in an event's metadata: a command's trace context


def describe_error(error: BaseException) -> str:
    """``Type: message``, storable as text by every backend (no NUL), and bounded."""
    text = f"{type(error).__name__}: {error}".replace("\x00", "\\x00")
    return text if len(text) <= _ERROR_LENGTH else text[: _ERROR_LENGTH - 1] + "\u2026"


def foreign_views(recorded: str | None, identity: str, checkpoint: int, head: int) -> str | None:
    """Why views at ``checkpoint``, recorded as built from event store ``recorded``, do not
    belong to the event store ``identity`` whose log ends at ``head``; None when they do."""
    if recorded is not None and recorded != identity and checkpoint > 0:
        return f"they were built from event store {recorded}, and this event store is {identity}"
    if checkpoint > head:
        return (
            f"they reflect the log up to position {checkpoint}, and this event store's log "
            f"ends at position {head}"
        )
    return None


class ProjectionRunner:
    """Runs one projection against one event store and one read store."""

    def __init__(
        self,
        projection: Projection,
        *,
        event_store: EventStore,
        read_store: ReadStore,
        codec: Codec,
        positions: PositionTracker | None = None,
        invalidator: CacheInvalidator | None = None,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        if not projection.name:
            raise ValueError(f"{type(projection).__name__} needs a name")
        self.tracer = tracer if tracer is not None else NoTracer()
        self._measure(metrics if metrics is not None else NoMetrics(), projection.name)
        self.projection = projection
        self.name = projection.name
        self.event_store = event_store
        self.read_store = read_store
        self.codec = codec
        self.positions = positions if positions is not None else PositionTracker()
        self.invalidator = invalidator
        """The cache's invalidator (None: no cache in front of these views)."""
        self._handlers = projection.bind(codec)
        self.retry_policy = handler_policy(projection.retries, projection.retry_delay)
        """For a failing handler: the projection's ``retries`` and ``retry_delay``."""
        self.breaker = CircuitBreaker(failure_threshold=3, backoff=STORE_RETRY.backoff)
        """Around the stores as this runner reaches them: opens after 3 failures in a row
        (``supervise`` then waits for it), closes at the next batch that commits."""
        self._lock = asyncio.Lock()
        self.generation = 0
        self.checkpoint = 0
        self.status = ProjectionStatus.RUNNING
        self.error: str | None = None
        self.attempts = 0
        # Streams with parked events, and the last parking's error, per generation (a
        # rebuild fills its own copy).
        self._parked: dict[int, set[str]] = {}
        self._park_errors: dict[int, str] = {}
        self._scratch: set[int] = set()
        """Generations replayed only to be compared (verify): not measured, not traced."""
        self._started = False
        self._resumed = asyncio.Event()  # a rebuild ended a stop or a refusal
        self.paused = False
        self._revision = 0
        self._poked = asyncio.Event()  # an operation in this process changed the state
        self._control_due = 0.0

    def _measure(self, metrics: Metrics, name: str) -> None:
        projection = ("projection",)
        self._apply_duration = metrics.histogram(
            "twofold_projection_apply_duration_seconds",
            "Time to apply a batch of events and commit it with the checkpoint.",
            labels=projection,
        ).labels(name)
        self._batch_size = metrics.histogram(
            "twofold_projection_batch_events",
            "Events per batch a projection applies (live or rebuilding); its _sum counts the "
            "events it went past (applied, not handled, or parked).",
            labels=projection,
            buckets=SIZE_BUCKETS,
        ).labels(name)
        self._retries = metrics.counter(
            "twofold_projection_retries_total",
            "Retries of a failing event, and restarts after a failure of the stores.",
            labels=projection,
        ).labels(name)
        self._parkings = metrics.counter(
            "twofold_projection_parked_events_total",
            "Events parked as dead letters (the gauge twofold_projection_parked_events "
            "says how many are parked now).",
            labels=projection,
        ).labels(name)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> ProjectionState:
        """Load the checkpoint and the parked streams, and check that the views belong to
        the event store; idempotent."""
        state = await self.read_store.prepare(self.name, self.projection.collections)
        await self._reload(state)
        self._started = True
        return state

    async def _reload(self, state: ProjectionState | None = None) -> None:
        """Take the stored state (``state``, or read it) as this runner's."""
        if state is None:
            state = await self.read_store.state(self.name)
        switched = self._started and state.generation != self.generation
        letters = await self.read_store.dead_letters(self.name, state.generation)
        refusal = await self._foreign(state)
        # No await from here on: nobody sees a state half taken.
        self.generation = state.generation
        self.checkpoint = state.checkpoint
        self.status = state.status
        self.error = state.error
        self.attempts = state.attempts
        self.paused = state.paused
        self._revision = state.revision
        self._parked = {self.generation: {letter.stream_id for letter in letters}}
        self._park_errors = {}
        if letters and state.error is not None and state.status is ProjectionStatus.RUNNING:
            self._park_errors[self.generation] = state.error
        self.positions.reset(self.name, self.checkpoint)
        if refusal is None:
            self.positions.accept(self.name)
        else:
            if self.status is not ProjectionStatus.REFUSED:
                log.error("%s", refusal)
            self.status = ProjectionStatus.REFUSED
            self.error = str(refusal)
            self.positions.refuse(self.name, refusal)
        if switched:  # another process switched copies: the cache holds the old one
            await self._cache_reset()

    async def _foreign(self, state: ProjectionState) -> ForeignViewsError | None:
        """Why the stored views do not belong to the event store, if they do not: built
        from another one, or ahead of its log. Records the store's identity otherwise."""
        identity = await self.event_store.identity()
        head = await self.event_store.head_position()  # read after the checkpoint: no race
        recorded: str | None = None
        if state.checkpoint <= head:
            recorded = await self.read_store.bind_event_store(self.name, state.generation, identity)
        reason = foreign_views(recorded, identity, state.checkpoint, head)
        return None if reason is None else ForeignViewsError(self.name, reason)

    async def run(self) -> None:
        """Catch up, then follow live events, until cancelled.

        While stopped or refused it waits for a rebuild (in this process, or in another:
        it looks at the stored state every ``RECHECK_INTERVAL`` seconds).
        """
        if not self._started:
            await self.start()
        # This process alone commits from now on: whatever the cache holds of the
        # projection may come from another process's runs (or from a store made anew).
        await self._cache_reset(force=True)
        while True:
            if self.paused and self.status not in _HALTED:
                # Stopped applying: say so (the operator's pause waits for this), then wait.
                await self._set(ProjectionStatus.PAUSED, None, 0)
                log.warning("projection %s is paused at %d", self.name, self.checkpoint)
                while self.paused:
                    await self._wait_while_paused()
                log.info("projection %s resumes at %d", self.name, self.checkpoint)
            if self.status is ProjectionStatus.PAUSED and not self.paused:
                await self._settle()
                continue
            if self.status in _HALTED:
                log.warning("projection %s is %s: %s", self.name, self.status.value, self.error)
                while self.status in _HALTED:
                    await self._wait_for_resume()
                continue
            await self.catch_up()
            if self.status in _HALTED or self.paused:
                continue
            try:
                await self._follow()
            except GenerationChangedError:
                async with self._lock:
                    await self._reload()
                continue
            if self.status not in _HALTED and not self.paused:
                return  # the subscription ended: the store was closed

    def poke(self) -> None:
        """Look at the stored state now (an operation of this process changed it)."""
        self._poked.set()
        self._resumed.set()

    async def _wait_while_paused(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._poked.wait(), CONTROL_INTERVAL)
        await self._look(force=True)

    async def _look(self, *, force: bool = False) -> None:
        """Take what operators changed in the stored state (see CONTROL_INTERVAL): at
        most every CONTROL_INTERVAL seconds unless poked or ``force``."""
        now = asyncio.get_running_loop().time()
        if not (force or self._poked.is_set() or now >= self._control_due):
            return
        self._poked.clear()
        self._control_due = now + CONTROL_INTERVAL
        async with self._lock:
            state = await self.read_store.state(self.name)
            if state.generation != self.generation:
                await self._reload(state)  # another process rebuilt or reset the views
                raise GenerationChangedError(self.name, state.generation)
            self.paused = state.paused
            await self._take_revision(state)

    async def _take_revision(self, state: ProjectionState) -> None:
        """Dead letters retried or skipped elsewhere (the revision moved): reload the
        active copy's parked streams."""
        if state.revision == self._revision or state.generation != self.generation:
            return
        letters = await self.read_store.dead_letters(self.name, self.generation)
        self._revision = state.revision
        self._parked[self.generation] = {letter.stream_id for letter in letters}
        # A release elsewhere may have changed views without a new checkpoint.
        await self._cache_reset()
        await self._settle()

    async def _wait_for_resume(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._resumed.wait(), RECHECK_INTERVAL)
        self._resumed.clear()
        if self.status in _HALTED:
            async with self._lock:  # not in the middle of a rebuild's switch
                await self._reload()

    async def supervise(
        self,
        *,
        fatal: tuple[type[BaseException], ...] = (),
        policy: RetryPolicy = STORE_RETRY,
        reload: bool = True,
    ) -> None:
        """``run`` until cancelled; after an unexpected failure (the stores', not a
        handler's: the projection's own policy covers those), report ``retrying`` with the
        attempts and the error, and start again after ``policy``'s backoff (by default
        0.5 s doubling to 30 s, with jitter, without a limit: a store must come back), or
        later while the breaker is open. Errors of a ``fatal`` type end it.

        ``reload``: start by reading the stored state (another process may have moved the
        checkpoint); False only right after ``start``.
        """
        while True:
            try:
                if reload or not self._started:
                    await self.start()
                reload = True  # after a failure, always
                await self.run()
                return
            except fatal:
                raise
            except Exception as error:
                delay = await self.failed(error, policy=policy)
            await asyncio.sleep(delay)

    async def failed(self, error: BaseException, *, policy: RetryPolicy = STORE_RETRY) -> float:
        """Report an unexpected failure (status ``retrying``, one more attempt, the
        breaker told); return how long to wait before the next attempt."""
        attempts = self.attempts + 1 if self.status is ProjectionStatus.RETRYING else 1
        self._retries.inc()
        self.breaker.failure(error)
        delay = max(policy.delay(attempts - 1), self.breaker.retry_in())
        log.error(
            "projection %s failed (attempt %d); retrying in %.1fs",
            self.name,
            attempts,
            delay,
            exc_info=error,
        )
        await self._set(ProjectionStatus.RETRYING, describe_error(error), attempts)
        return delay

    async def catch_up(self) -> int:
        """Apply every event already in the log; return the checkpoint reached."""
        if not self._started:
            await self.start()
        pages = PageReader(self.event_store, self.projection.batch_size)
        try:
            while self.status not in _HALTED:
                try:
                    await self._look()
                    if self.paused:
                        break
                    page = await pages.after(self.checkpoint)
                    if not page:
                        break
                    await self.process(page)
                except GenerationChangedError:
                    async with self._lock:
                        await self._reload()
        finally:
            await pages.close()
        if self.status is ProjectionStatus.RETRYING:
            self.breaker.success()
            await self._settle()  # caught up: whatever failed works again
        return self.checkpoint

    async def _follow(self) -> None:
        queue: asyncio.Queue[RecordedEvent] = asyncio.Queue(self.projection.batch_size * 4)
        subscription = self.event_store.subscribe(after=self.checkpoint)
        feeder = asyncio.create_task(_feed(subscription, queue), name=f"feed-{self.name}")
        getter: asyncio.Future[RecordedEvent] | None = None
        generation = self.generation
        try:
            while self.status is not ProjectionStatus.STOPPED:
                await self._look()
                if self.generation != generation:
                    # This process switched copies (a reset here): the subscription reads
                    # on from the old copy's checkpoint; catch the new copy up instead
                    # (checked again under the lock before a batch is applied).
                    raise GenerationChangedError(self.name, self.generation)
                if self.paused:
                    return
                if getter is None:  # not while one holds an event not yet taken
                    getter = asyncio.ensure_future(queue.get())
                poked = asyncio.ensure_future(self._poked.wait())
                waiting: set[asyncio.Future[Any]] = {getter, feeder, poked}
                try:
                    done, _ = await asyncio.wait(
                        waiting,
                        timeout=CONTROL_INTERVAL,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    poked.cancel()
                if feeder in done and getter not in done:
                    feeder.result()  # the subscription ended: surface its error
                    return
                if getter not in done:
                    continue  # time to look at the stored state, or poked
                batch = [getter.result()]
                getter = None
                while len(batch) < self.projection.batch_size and not queue.empty():
                    batch.append(queue.get_nowait())
                async with self._lock:
                    if self.generation != generation:
                        raise GenerationChangedError(self.name, self.generation)
                    batch = [r for r in batch if r.position > self.checkpoint]
                    if batch:
                        await self._process(batch, generation)
        finally:
            # Both end here, the pending get too: no task outlives the runner.
            pending: list[asyncio.Future[Any]] = [feeder] if getter is None else [getter, feeder]
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)
            if not feeder.cancelled():
                feeder.exception()  # seen (raised above, or lost to the error under way)

    @property
    def stopped(self) -> bool:
        return self.status is ProjectionStatus.STOPPED

    # -- applying -------------------------------------------------------------------------

    async def process(self, records: list[RecordedEvent]) -> None:
        """Apply one batch with the failure policy; advance the checkpoint past it."""
        async with self._lock:
            await self._process(records, self.generation)

    async def _process(self, records: list[RecordedEvent], generation: int) -> None:
        pending = records
        while pending:
            failed = await self._commit_until_failure(pending, generation)
            if failed is None:
                return
            index, error = failed
            if not await self._retry(pending[index], generation, error):
                return
            pending = pending[index + 1 :]

    async def _commit_until_failure(
        self, records: list[RecordedEvent], generation: int
    ) -> tuple[int, BaseException] | None:
        """Commit ``records``; if an event fails, commit those before it and return its
        index and error. An event fails when its handler raises, or when the read store
        refuses what it wrote (``ReadStore.rejects``: text PostgreSQL cannot hold, say),
        found by committing halves. Any other error of the store is raised: it is the
        store's, not the event's, and ``supervise`` retries it."""
        try:
            await self._commit(records, generation)
            return None
        except HandlerFailed as failed:
            if failed.index:
                before = await self._commit_until_failure(records[: failed.index], generation)
                if before is not None:
                    return before
            return failed.index, failed.error
        except Exception as error:
            if not self.read_store.rejects(error):
                raise
            if len(records) == 1:
                return 0, error
        half = len(records) // 2
        first = await self._commit_until_failure(records[:half], generation)
        if first is not None:
            return first
        second = await self._commit_until_failure(records[half:], generation)
        return None if second is None else (half + second[0], second[1])

    async def _commit(
        self,
        records: list[RecordedEvent],
        generation: int,
        parked: list[tuple[RecordedEvent, str]] | None = None,
    ) -> None:
        to_park = list(parked or ())
        streams = self._parked.setdefault(generation, set())
        if (
            streams
            and generation == self.generation
            and any(r.stream_id in streams for r in records)
        ):
            # About to park behind a stream: first take a release made elsewhere.
            await self._take_revision(await self.read_store.state(self.name))
            streams = self._parked.setdefault(generation, set())
        if streams:
            explicit = {r.position for r, _ in to_park}
            to_park.extend(
                (r, "an earlier event of this stream is parked")
                for r in records
                if r.stream_id in streams
                and r.type in self._handlers
                and r.position not in explicit
            )
        last = records[-1]
        apply = make_apply(self._handlers, self.codec, records, frozenset(streams))
        touched: dict[str, set[str]] = {}
        live = self.invalidator is not None and generation == self.generation
        if live:  # a rebuild's copy serves nobody: only the active copy's commits count
            apply, touched = recording(apply)
        started = time.perf_counter()
        scratch = generation in self._scratch
        with contextlib.nullcontext() if scratch else self._traced(records):
            await self.read_store.commit_batch(
                self.name,
                generation,
                apply,
                checkpoint=last.position,
                last_event_at=last.recorded_at,
                parked=to_park,
            )
        if not scratch:  # a verify's replay is not the projection's work
            self._apply_duration.observe(time.perf_counter() - started)
            self._batch_size.observe(len(records))
            if to_park:
                self._parkings.inc(len(to_park))
        self.breaker.success()  # the stores answer
        if generation == self.generation:
            after = self.checkpoint
            self.checkpoint = last.position
            if self.status is ProjectionStatus.RETRYING:
                await self._settle()  # a batch commits: running again (stored first)
            self.positions.advance(self.name, last.position)
            if live and self.invalidator is not None:
                await self.invalidator.committed(
                    self.name, generation, after=after, checkpoint=last.position, touched=touched
                )

    async def _cache_reset(self, *, force: bool = False) -> None:
        """Abandon the cache's entries of this projection (the active copy changed)."""
        if self.invalidator is not None:
            await self.invalidator.reset(self.name, self.generation, self.checkpoint, force=force)

    def _traced(self, records: list[RecordedEvent]) -> contextlib.AbstractContextManager[Any]:
        """A span for applying ``records``, linked to the commands that recorded them."""
        if not self.tracer.enabled:
            return contextlib.nullcontext()
        links = [self.codec.decode_metadata(r).extra for r in records if _TRACEPARENT in r.metadata]
        return self.tracer.span(
            f"projection {self.name} apply",
            kind="consumer",
            attributes={
                "twofold.projection": self.name,
                "twofold.events": len(records),
                "twofold.position": records[-1].position,
            },
            links=links,
        )

    async def _retry(self, record: RecordedEvent, generation: int, error: BaseException) -> bool:
        """Retry one failing event with backoff; then apply the policy. True: go on."""
        live = generation == self.generation
        where = f"position {record.position} (stream {record.stream_id!r})"
        attempt = 0
        while not self.retry_policy.exhausted(attempt):
            if live:
                await self._set(
                    ProjectionStatus.RETRYING, f"{where}: {describe_error(error)}", attempt + 1
                )
            self._retries.inc()
            await asyncio.sleep(self.retry_policy.delay(attempt))
            attempt += 1
            failed = await self._commit_until_failure([record], generation)
            if failed is None:
                return True
            error = failed[1]
        reason = describe_error(error)
        if self.projection.on_error == "park":
            log.warning("projection %s parks %s: %s", self.name, where, reason)
            self._parked.setdefault(generation, set()).add(record.stream_id)
            self._park_errors[generation] = f"{where}: {reason}"
            await self._commit([record], generation, parked=[(record, reason)])
            if live:
                await self._settle()
            return True
        if not live:
            # A rebuild never stops the live copy: it fails and the old copy keeps serving.
            raise ProjectionStoppedError(self.name, record.position, reason)
        log.error("projection %s stops at %s: %s", self.name, where, reason)
        await self._set(ProjectionStatus.STOPPED, f"{where}: {reason}", self.projection.retries + 1)
        return False

    # -- status ---------------------------------------------------------------------------

    async def _set(self, status: ProjectionStatus, error: str | None, attempts: int) -> None:
        """Change the status, and store it (for every process to report) when it changed.

        Storing is best effort: while the store itself fails, this process still knows.
        """
        if (status, error, attempts) == (self.status, self.error, self.attempts):
            return
        self.status, self.error, self.attempts = status, error, attempts
        try:
            await self.read_store.set_status(self.name, status, error, attempts=attempts)
        except Exception as failure:
            log.warning("cannot store the status of projection %s: %s", self.name, failure)

    async def _settle(self) -> None:
        """Running, with the last parking's error while events of this copy are parked."""
        if self.status in _HALTED or (self.paused and self.status is ProjectionStatus.PAUSED):
            return
        error = None
        if self._parked.get(self.generation):
            error = self._park_errors.get(self.generation, "events are parked")
        else:
            self._park_errors.pop(self.generation, None)
        await self._set(ProjectionStatus.RUNNING, error, 0)

    # -- operations -----------------------------------------------------------------------

    async def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Replay the whole log into a fresh copy while the old one serves, then switch.

        ``progress(done, total)`` is called after every batch and at the switch (only
        with news): ``done`` is the position the new copy reached, ``total`` the log's
        head, read at the start and again whenever the copy passes it (the log grows
        meanwhile); at the switch ``done == total``. It runs on the event loop, so it must
        be quick; an error it raises ends the rebuild, and the old copy keeps serving.
        Returns the checkpoint of the new copy at the switch.
        """
        collections = self.projection.collections
        generation = await self.read_store.begin_rebuild(self.name, collections)
        await self.read_store.bind_event_store(
            self.name, generation, await self.event_store.identity()
        )
        checkpoint = 0
        total = await self.event_store.head_position() if progress is not None else 0
        shown = (-1, -1)
        self._parked[generation] = set()
        pages = PageReader(self.event_store, self.projection.batch_size)

        def report(done: int, of: int) -> None:
            nonlocal shown
            if progress is not None and (done, of) != shown:
                shown = (done, of)
                progress(done, of)

        async def replay() -> None:
            nonlocal checkpoint, total
            while True:
                page = await pages.after(checkpoint)
                if not page:
                    return
                await self._process(page, generation)
                checkpoint = page[-1].position
                if progress is not None:
                    if checkpoint > total:
                        total = max(checkpoint, await self.event_store.head_position())
                    report(checkpoint, total)

        try:
            # Most of the replay runs beside the live runner; only the tail holds the lock.
            await replay()
            async with self._lock:
                await replay()
                await self._switch(generation, checkpoint)
                self._parked = {generation: self._parked.get(generation, set())}
                self._park_errors = {g: e for g, e in self._park_errors.items() if g == generation}
                self.generation = generation
                self.checkpoint = checkpoint
                # As the switch stored it; then the parkings of the new copy, if any.
                self.status, self.error, self.attempts = ProjectionStatus.RUNNING, None, 0
                self.positions.reset(self.name, checkpoint)
                self.positions.accept(self.name)
                await self._settle()
                self._resumed.set()
            report(checkpoint, checkpoint)
        except BaseException:
            self._parked.pop(generation, None)
            self._park_errors.pop(generation, None)
            raise
        finally:
            await pages.close()
        return checkpoint

    async def _switch(self, generation: int, checkpoint: int) -> None:
        """Make the rebuilt copy active. The cache abandons the old copy's entries first
        (nothing is served from them after the switch) and refuses answers of the old copy
        until the switch; if the switch fails, the cache goes back to the old copy."""
        if self.invalidator is None:
            await self.read_store.switch(self.name, generation)
            return
        await self.invalidator.reset(self.name, generation, checkpoint)
        try:
            await self.read_store.switch(self.name, generation)
        except BaseException:
            await self._cache_reset(force=True)
            raise

    async def replay_scratch(self, *, until: int) -> dict[str, dict[str, dict[str, Any]]]:
        """Replay the log up to position ``until`` into a scratch copy that is never made
        active, read its documents, and drop it (for ``verify``): collection -> key ->
        document. Raises GenerationChangedError when a switch drops it meanwhile."""
        generation = await self.read_store.begin_rebuild(self.name, self.projection.collections)
        self._parked[generation] = set()
        self._scratch.add(generation)
        try:
            await self.read_store.bind_event_store(
                self.name, generation, await self.event_store.identity()
            )
            checkpoint = 0
            while checkpoint < until:
                page = await self.event_store.read_all(
                    after=checkpoint, limit=self.projection.batch_size
                )
                page = [record for record in page if record.position <= until]
                if not page:
                    break
                await self._process(page, generation)
                checkpoint = page[-1].position
            copy = await self.read_store.read_copy(self.name, generation)
            return copy.documents
        finally:
            self._parked.pop(generation, None)
            self._park_errors.pop(generation, None)
            self._scratch.discard(generation)
            await self.read_store.drop_copy(self.name, generation)

    async def refresh(self) -> None:
        """Take the stored state again: another process may have rebuilt, reset or
        released since this runner last looked (an operator's process does this first)."""
        async with self._lock:
            await self._reload()

    async def reset(self) -> None:
        """Empty the views and start again from position 0 (not blue/green)."""
        async with self._lock:
            await self.read_store.reset(self.name, self.projection.collections)
            await self._reload()
        self.poke()

    async def dead_letters(self) -> list[DeadLetter]:
        """The parked events of the active copy, in log order."""
        return await self.read_store.dead_letters(self.name, self.generation)

    async def retry_dead_letters(self, stream_id: str | None = None) -> int:
        """Apply parked events again, stream by stream, in order; return how many succeeded.

        A stream whose parked events still fail stays parked, whole. Once a stream has no
        parked events left, its new events are applied again as they come.
        """
        released = 0
        async with self._lock:
            letters = await self.read_store.dead_letters(self.name, self.generation)
            streams: dict[str, list[DeadLetter]] = {}
            for letter in letters:
                if stream_id is None or letter.stream_id == stream_id:
                    streams.setdefault(letter.stream_id, []).append(letter)
            for stream, parked in streams.items():
                records = [letter.record for letter in sorted(parked, key=lambda d: d.position)]
                try:
                    await self.read_store.release_dead_letters(
                        self.name,
                        self.generation,
                        make_apply(self._handlers, self.codec, records),
                        [r.position for r in records],
                    )
                except HandlerFailed as failed:
                    log.warning("dead letters of %s still fail: %s", stream, failed)
                    continue
                self._parked.get(self.generation, set()).discard(stream)
                released += len(records)
            if released:  # views changed without a new checkpoint
                await self._cache_reset()
            await self._settle()
        return released

    async def skip_dead_letters(
        self, stream_id: str | None = None, positions: Collection[int] | None = None
    ) -> int:
        """Drop parked events without applying them; return how many were dropped.

        All of them, those of ``stream_id``, or those at ``positions`` (each must be parked,
        in ``stream_id`` when it is given; otherwise nothing is dropped). A stream keeps
        its other parked events, in order (retry or skip them too); once it has none left,
        its new events are applied again. The views never see a skipped event, until a
        rebuild replays the log.
        """
        wanted = None if positions is None else set(positions)
        async with self._lock:
            letters = await self.read_store.dead_letters(self.name, self.generation)
            chosen = [
                letter
                for letter in letters
                if (stream_id is None or letter.stream_id == stream_id)
                and (wanted is None or letter.position in wanted)
            ]
            if wanted is not None:
                missing = sorted(wanted - {letter.position for letter in chosen})
                if missing:
                    scope = f"stream {stream_id!r} of " if stream_id is not None else ""
                    parked = ", ".join(str(d.position) for d in letters) or "none"
                    raise ValidationError(
                        {
                            "positions": f"{', '.join(map(str, missing))} not parked in "
                            f"{scope}projection {self.name!r} (parked: {parked}); "
                            "nothing was skipped"
                        }
                    )
            if chosen:
                skipped = {letter.position for letter in chosen}
                await self.read_store.release_dead_letters(
                    self.name, self.generation, _apply_nothing, sorted(skipped)
                )
                still = {d.stream_id for d in letters if d.position not in skipped}
                streams = self._parked.setdefault(self.generation, set())
                streams.intersection_update(still)
                log.warning(
                    "projection %s skipped parked positions %s",
                    self.name,
                    ", ".join(map(str, sorted(skipped))),
                )
            await self._settle()
        return len(chosen)

    def lag(self, head: int) -> int:
        return max(0, head - self.checkpoint)


async def _feed(
    subscription: AsyncIterator[RecordedEvent], queue: asyncio.Queue[RecordedEvent]
) -> None:
    async for record in subscription:
        await queue.put(record)


def _apply_nothing(tx: ViewTransaction) -> None:
    """What a skipped dead letter changes in the views."""

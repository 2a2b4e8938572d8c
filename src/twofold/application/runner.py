"""The projection runner: read the log after the checkpoint, apply in batches, tail live.

Invariant: views and checkpoint commit together (``ReadStore.commit_batch``), so a crash
anywhere replays at most the uncommitted batch and nothing is ever applied twice.

Failure policy, per projection: a failing event is retried ``retries`` times with
exponential backoff; then either the projection stops (``on_error = "stop"``) and reports,
or the event is parked as a dead letter with every later event of its stream
(``on_error = "park"``), so one stream's order is never broken while the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from twofold.application.ports import EventStore
from twofold.application.positions import PositionTracker
from twofold.application.projections import HandlerFailed, Projection, make_apply
from twofold.application.records import RecordedEvent
from twofold.application.views import DeadLetter, ProjectionState, ProjectionStatus, ReadStore
from twofold.codec import Codec
from twofold.errors import GenerationChangedError, ProjectionStoppedError

__all__ = ["ProjectionRunner"]

log = logging.getLogger("twofold.projections")


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
    ) -> None:
        if not projection.name:
            raise ValueError(f"{type(projection).__name__} needs a name")
        self.projection = projection
        self.name = projection.name
        self.event_store = event_store
        self.read_store = read_store
        self.codec = codec
        self.positions = positions if positions is not None else PositionTracker()
        self._handlers = projection.bind(codec)
        self._lock = asyncio.Lock()
        self.generation = 0
        self.checkpoint = 0
        self.status = ProjectionStatus.RUNNING
        self.error: str | None = None
        # Streams with parked events, per generation (a rebuild fills its own copy).
        self._parked: dict[int, set[str]] = {}
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> ProjectionState:
        """Load the checkpoint and the parked streams; idempotent."""
        state = await self.read_store.prepare(self.name, self.projection.collections)
        await self._adopt(state)
        self._started = True
        return state

    async def _adopt(self, state: ProjectionState) -> None:
        self.generation = state.generation
        self.checkpoint = state.checkpoint
        self.status = state.status
        self.error = state.error
        letters = await self.read_store.dead_letters(self.name, self.generation)
        self._parked = {self.generation: {letter.stream_id for letter in letters}}
        self.positions.reset(self.name, self.checkpoint)

    async def run(self) -> None:
        """Catch up, then follow live events until cancelled or stopped."""
        if not self._started:
            await self.start()
        if self.status is ProjectionStatus.STOPPED:
            log.warning("projection %s is stopped: %s", self.name, self.error)
            return
        while True:
            await self.catch_up()
            if self.stopped:
                return
            try:
                await self._follow()
                return
            except GenerationChangedError:
                await self._adopt(await self.read_store.state(self.name))

    async def catch_up(self) -> int:
        """Apply every event already in the log; return the checkpoint reached."""
        if not self._started:
            await self.start()
        size = self.projection.batch_size
        while self.status is not ProjectionStatus.STOPPED:
            page = await self.event_store.read_all(after=self.checkpoint, limit=size)
            if not page:
                break
            try:
                await self.process(page)
            except GenerationChangedError:
                await self._adopt(await self.read_store.state(self.name))
        return self.checkpoint

    async def _follow(self) -> None:
        queue: asyncio.Queue[RecordedEvent] = asyncio.Queue(self.projection.batch_size * 4)
        subscription = self.event_store.subscribe(after=self.checkpoint)
        feeder = asyncio.create_task(_feed(subscription, queue), name=f"feed-{self.name}")
        try:
            while self.status is not ProjectionStatus.STOPPED:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, feeder}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    feeder.result()  # the subscription ended: surface its error
                    return
                batch = [getter.result()]
                while len(batch) < self.projection.batch_size and not queue.empty():
                    batch.append(queue.get_nowait())
                batch = [r for r in batch if r.position > self.checkpoint]
                if batch:
                    await self.process(batch)
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder

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
            try:
                await self._commit(pending, generation)
                return
            except HandlerFailed as failed:
                done, failing = pending[: failed.index], pending[failed.index]
                if done:
                    await self._commit(done, generation)
                if not await self._retry(failing, generation, failed):
                    return
                pending = pending[failed.index + 1 :]

    async def _commit(
        self,
        records: list[RecordedEvent],
        generation: int,
        parked: list[tuple[RecordedEvent, str]] | None = None,
    ) -> None:
        to_park = list(parked or ())
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
        await self.read_store.commit_batch(
            self.name,
            generation,
            make_apply(self._handlers, self.codec, records, frozenset(streams)),
            checkpoint=last.position,
            last_event_at=last.recorded_at,
            parked=to_park,
        )
        if generation == self.generation:
            self.checkpoint = last.position
            self.positions.advance(self.name, last.position)

    async def _retry(self, record: RecordedEvent, generation: int, failed: HandlerFailed) -> bool:
        """Retry one failing event with backoff; then apply the policy. True: go on."""
        error = failed.error
        for attempt in range(self.projection.retries):
            await asyncio.sleep(self.projection.retry_delay * (2**attempt))
            try:
                await self._commit([record], generation)
                return True
            except HandlerFailed as again:
                error = again.error
        reason = f"{type(error).__name__}: {error}"
        if self.projection.on_error == "park":
            log.warning("projection %s parks position %d: %s", self.name, record.position, reason)
            self._parked.setdefault(generation, set()).add(record.stream_id)
            await self._commit([record], generation, parked=[(record, reason)])
            return True
        if generation != self.generation:
            # A rebuild never stops the live copy: it fails and the old copy keeps serving.
            raise ProjectionStoppedError(self.name, record.position, reason)
        log.error("projection %s stops at position %d: %s", self.name, record.position, reason)
        self.status = ProjectionStatus.STOPPED
        self.error = f"position {record.position}: {reason}"
        await self.read_store.set_status(self.name, ProjectionStatus.STOPPED, self.error)
        return False

    # -- operations -----------------------------------------------------------------------

    def ensure_running(self) -> None:
        if self.status is ProjectionStatus.STOPPED:
            raise ProjectionStoppedError(self.name, self.checkpoint, self.error or "stopped")

    async def rebuild(self) -> int:
        """Replay the whole log into a fresh copy while the old one serves, then switch.

        Returns the checkpoint of the new copy at the switch.
        """
        collections = self.projection.collections
        generation = await self.read_store.begin_rebuild(self.name, collections)
        checkpoint = 0
        self._parked[generation] = set()
        size = self.projection.batch_size
        try:
            # Most of the replay runs beside the live runner; only the tail holds the lock.
            while True:
                page = await self.event_store.read_all(after=checkpoint, limit=size)
                if not page:
                    break
                await self._process(page, generation)
                checkpoint = page[-1].position
            async with self._lock:
                while True:
                    page = await self.event_store.read_all(after=checkpoint, limit=size)
                    if not page:
                        break
                    await self._process(page, generation)
                    checkpoint = page[-1].position
                await self.read_store.switch(self.name, generation)
                self._parked = {generation: self._parked.get(generation, set())}
                self.generation = generation
                self.checkpoint = checkpoint
                self.status = ProjectionStatus.RUNNING
                self.error = None
                self.positions.reset(self.name, checkpoint)
        except BaseException:
            self._parked.pop(generation, None)
            raise
        return checkpoint

    async def dead_letters(self) -> list[DeadLetter]:
        return await self.read_store.dead_letters(self.name, self.generation)

    async def retry_dead_letters(self, stream_id: str | None = None) -> int:
        """Apply parked events again, stream by stream, in order; return how many succeeded.

        A stream whose first parked event fails again stays parked, whole.
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
        return released

    def lag(self, head: int) -> int:
        return max(0, head - self.checkpoint)


async def _feed(
    subscription: AsyncIterator[RecordedEvent], queue: asyncio.Queue[RecordedEvent]
) -> None:
    async for record in subscription:
        await queue.put(record)

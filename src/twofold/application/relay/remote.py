"""Projections in other services: a runner whose source is a bus instead of the event store.

It applies what a relay published into its own read store, with the views, the stream
versions it has applied and the checkpoint committed in ONE read-store transaction
(``ReadStore.commit_batch``, as the ProjectionRunner does), and acknowledges the messages
only after that commit. So a crash anywhere costs at most a redelivery, and:

- a message whose stream version is applied already is a duplicate: it is dropped;
- the next version of a stream is applied (or, for a relay's skip marker, only counted);
- a later version while an earlier one is missing is a gap it cannot explain: the runner
  commits what came before, stops, and raises MessageGapError naming the stream and the
  missing versions, rather than apply out of order or skip silently.

The applied versions live in a collection of the projection's own, ``<name>_bus_versions``
(one document per stream: ``{"version": n}``), so they are rebuilt, reset and switched with
the views. The checkpoint is the highest position applied: a query's ``min_position`` waits
on it, which gives read-your-writes across services when the worker reads the destination in
order (one member per group; see docs/relay.md for brokers that partition).

Failure policy, per projection, as for the ProjectionRunner: a failing handler is retried
``retries`` times with backoff; then ``on_error = "stop"`` stops the runner, ``"park"`` parks
the event with every later event of its stream in the dead letters and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from twofold.application.failure import BROKER_RETRY, RetryPolicy, handler_policy
from twofold.application.positions import PositionTracker
from twofold.application.projections import HandlerFailed, Projection
from twofold.application.relay.errors import MessageGapError, PublishError
from twofold.application.relay.message import BusMessage
from twofold.application.relay.source import BusSource, Delivery
from twofold.application.tracing import NoTracer, Tracer, event_contexts
from twofold.application.views import (
    Collection,
    ProjectionState,
    ProjectionStatus,
    ReadStore,
    ViewTransaction,
)
from twofold.codec import Codec
from twofold.errors import GenerationChangedError, ProjectionStoppedError
from twofold.records import RecordedEvent

__all__ = ["BusProjectionRunner", "versions_collection"]

log = logging.getLogger("twofold.projections")


def versions_collection(projection: str) -> str:
    """The collection where a bus-fed projection keeps the stream versions it applied."""
    return f"{projection}_bus_versions"


class _Gap(Exception):
    def __init__(self, index: int, stream_id: str, expected: int, received: int) -> None:
        super().__init__(stream_id)
        self.index = index
        self.stream_id = stream_id
        self.expected = expected
        self.received = received


class BusProjectionRunner:
    """Runs one projection from a BusSource into a ReadStore."""

    def __init__(
        self,
        projection: Projection,
        *,
        source: BusSource,
        read_store: ReadStore,
        codec: Codec,
        positions: PositionTracker | None = None,
        receive_timeout: float = 1.0,
        policy: RetryPolicy = BROKER_RETRY,
        tracer: Tracer | None = None,
    ) -> None:
        if not projection.name:
            raise ValueError(f"{type(projection).__name__} needs a name")
        self.projection = projection
        self.name = projection.name
        self.source = source
        self.read_store = read_store
        self.codec = codec
        self.positions = positions if positions is not None else PositionTracker()
        self.receive_timeout = receive_timeout
        self.policy = policy
        """Retrying a broker that fails to deliver (a limit: ``run()`` raises its error once
        the retries are spent); a failing handler follows the projection's own policy."""
        self._handler_policy = handler_policy(projection.retries, projection.retry_delay)
        self.tracer: Tracer = tracer if tracer is not None else NoTracer()
        self._handlers = projection.bind(codec)
        self._versions = versions_collection(self.name)
        self.collections = (*projection.collections, Collection(self._versions))
        self.generation = 0
        self.checkpoint = 0
        self.status = ProjectionStatus.RUNNING
        self.error: str | None = None
        self.applied = 0
        self.duplicates = 0
        self._parked: set[str] = set()
        self._started = False

    async def start(self) -> ProjectionState:
        state = await self.read_store.prepare(self.name, self.collections)
        await self._adopt(state)
        self._started = True
        return state

    async def _adopt(self, state: ProjectionState) -> None:
        self.generation = state.generation
        self.checkpoint = state.checkpoint
        self.status = state.status
        self.error = state.error
        letters = await self.read_store.dead_letters(self.name, self.generation)
        self._parked = {letter.stream_id for letter in letters}
        self.positions.reset(self.name, self.checkpoint)

    @property
    def stopped(self) -> bool:
        return self.status is ProjectionStatus.STOPPED

    async def run(self) -> None:
        """Receive, apply and acknowledge until cancelled; raise MessageGapError on a gap."""
        if not self._started:
            await self.start()
        if self.stopped:
            raise ProjectionStoppedError(self.name, self.checkpoint, self.error or "stopped")
        attempt = 0
        size = self.projection.batch_size
        while True:
            try:
                deliveries = await self.source.receive(
                    max_messages=size, timeout=self.receive_timeout
                )
                attempt = 0
            except PublishError as exc:
                if self.policy.exhausted(attempt):
                    raise
                delay = self.policy.delay(attempt)
                attempt += 1
                log.warning("bus projection %s: %s; again in %.2fs", self.name, exc, delay)
                await asyncio.sleep(delay)
                continue
            if deliveries:
                await self.process(deliveries)
                if self.stopped:
                    raise ProjectionStoppedError(self.name, self.checkpoint, self.error or "")

    async def process(self, deliveries: Sequence[Delivery]) -> None:
        """Apply one batch, then acknowledge it; raise MessageGapError on a gap."""
        messages = [d.message for d in deliveries]
        with self._traced(messages):
            while True:
                try:
                    await self._process(messages)
                    break
                except GenerationChangedError:
                    await self._adopt(await self.read_store.state(self.name))
        if not self.stopped:
            try:
                await self.source.ack(deliveries)
            except PublishError as exc:
                # Applied but not acknowledged: delivered again later, and dropped then.
                log.warning("bus projection %s could not acknowledge: %s", self.name, exc)

    def _traced(self, messages: list[BusMessage]) -> contextlib.AbstractContextManager[Any]:
        """A consumer span for applying ``messages``, linked to the commands that recorded
        their events (the context the relay carried in ``ce_traceparent``)."""
        if not self.tracer.enabled:
            return contextlib.nullcontext()
        records = [message.record for message in messages]
        return self.tracer.span(
            f"projection {self.name} apply",
            kind="consumer",
            attributes={
                "twofold.projection": self.name,
                "twofold.events": len(records),
                "twofold.position": records[-1].position,
                "messaging.operation.type": "process",
            },
            links=event_contexts(records),
        )

    async def _process(self, messages: list[BusMessage]) -> None:
        pending = messages
        while pending and not self.stopped:
            try:
                await self._commit(pending)
                return
            except _Gap as gap:
                if gap.index:
                    await self._commit(pending[: gap.index])
                error = MessageGapError(self.name, gap.stream_id, gap.expected, gap.received)
                await self._stop(str(error))
                raise error from None
            except HandlerFailed as failed:
                if failed.index:
                    await self._commit(pending[: failed.index])
                if not await self._retry(pending[failed.index], failed):
                    return
                pending = pending[failed.index + 1 :]

    async def _commit(
        self, messages: list[BusMessage], parked: tuple[BusMessage, str] | None = None
    ) -> None:
        to_park = [(m.record, "an earlier event of this stream is parked") for m in messages
                   if m.stream_id in self._parked and m.record.type in self._handlers]  # fmt: skip
        if parked is not None:
            to_park.append((parked[0].record, parked[1]))
        counts = [0, 0]
        checkpoint = max(self.checkpoint, max(m.record.position for m in messages))
        await self.read_store.commit_batch(
            self.name,
            self.generation,
            self._apply(messages, frozenset(self._parked), parked is not None, counts),
            checkpoint=checkpoint,
            last_event_at=messages[-1].record.recorded_at,
            parked=to_park,
        )
        self.applied += counts[0]
        self.duplicates += counts[1]
        self.checkpoint = checkpoint
        self.positions.advance(self.name, checkpoint)

    def _apply(
        self,
        messages: list[BusMessage],
        parked_streams: frozenset[str],
        park_last: bool,
        counts: list[int],
    ) -> Callable[[ViewTransaction], None]:
        handlers, decode, versions = self._handlers, self.codec.decode, self._versions

        def apply(tx: ViewTransaction) -> None:
            seen: dict[str, int] = {}
            for index, message in enumerate(messages):
                record = message.record
                stream = record.stream_id
                applied = seen.get(stream)
                if applied is None:
                    document = tx.get(versions, stream)
                    applied = int(document["version"]) if document else 0
                if record.stream_version <= applied:
                    counts[1] += 1
                    continue
                if record.stream_version != applied + 1:
                    raise _Gap(index, stream, applied + 1, record.stream_version)
                seen[stream] = record.stream_version
                tx.put(versions, stream, {"version": record.stream_version})
                handler = handlers.get(record.type)
                last = park_last and index == len(messages) - 1
                if message.skipped or handler is None or stream in parked_streams or last:
                    continue
                tx.record = record
                try:
                    handler(decode(record), tx)
                except Exception as exc:
                    raise HandlerFailed(index, record, exc) from exc
                counts[0] += 1

        return apply

    async def _retry(self, message: BusMessage, failed: HandlerFailed) -> bool:
        """Retry one failing event with backoff; then apply the policy. True: go on."""
        error: BaseException = failed.error
        policy = self._handler_policy
        attempt = 0
        while not policy.exhausted(attempt):
            await asyncio.sleep(policy.delay(attempt))
            attempt += 1
            try:
                await self._commit([message])
                return True
            except HandlerFailed as again:
                error = again.error
        reason = f"{type(error).__name__}: {error}"
        record: RecordedEvent = message.record
        if self.projection.on_error == "park":
            log.warning(
                "bus projection %s parks position %d: %s", self.name, record.position, reason
            )
            await self._commit([message], parked=(message, reason))
            self._parked.add(record.stream_id)
            return True
        await self._stop(f"position {record.position}: {reason}")
        return False

    async def _stop(self, error: str) -> None:
        log.error("bus projection %s stops: %s", self.name, error)
        self.status = ProjectionStatus.STOPPED
        self.error = error
        await self.read_store.set_status(self.name, ProjectionStatus.STOPPED, error)

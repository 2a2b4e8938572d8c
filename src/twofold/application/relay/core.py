"""The relay: follows the event store's global log and publishes it to one broker destination.

The event store is the outbox (DESIGN 6): the relay is a checkpointed cursor over the log,
with no second copy of the events to keep. Its rules:

- It reads the log in position order after its checkpoint and publishes in that order, with
  at most ``window`` messages waiting for the broker's acknowledgement, and never two of one
  stream: a stream's next event waits until the broker acknowledged the one before, so a
  retry can never overtake it (and a refusal can park the rest of the stream before any of
  it went out).
- The checkpoint moves only past messages the broker acknowledged (or parked); it is stored
  every ``checkpoint_interval`` seconds and when the window empties. After a crash the relay
  publishes again from the stored checkpoint: consumers see duplicates, never a gap.
- Each message carries the destination's sequence number: 1, 2, 3... in publishing order,
  the same number again when a message is published again after a failure or a restart.
- Broker unavailable: everything after the checkpoint is published again after a backoff
  (exponential, with jitter), behind a circuit breaker; nothing is lost, the log is the queue.
- Refused for good (too large): the message parks with every later event of its stream,
  while other streams go on. ``retry`` publishes a stream's parked messages again (in order,
  under new sequence numbers); ``skip`` gives them up, sending in their place markers with no
  data (``ce_skipped``), so consumers count the stream's versions without a gap.

States::

    STARTING ──▶ RUNNING ◀──▶ RETRYING        (broker unavailable, waiting to try again)
                    │             │
                    └──── STOPPED ┘           (closed)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import msgspec

from twofold.application.failure import (
    BROKER_RETRY,
    BreakerStatus,
    CircuitBreaker,
    RetryPolicy,
)
from twofold.application.metrics import Metrics, NoMetrics
from twofold.application.ports import EventStore
from twofold.application.relay.errors import (
    BrokerUnavailableError,
    MessageRefusedError,
    PublishError,
)
from twofold.application.relay.message import DEFAULT_SOURCE, BusMessage
from twofold.application.relay.publisher import Publisher
from twofold.application.relay.store import ParkedMessage, RelayStore
from twofold.application.tracing import NoTracer, Tracer, event_contexts
from twofold.records import RecordedEvent

__all__ = ["Relay", "RelayState", "RelayStatus"]

log = logging.getLogger("twofold.relay")

_BEHIND_PARKED = "an earlier event of this stream is parked"


class RelayState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RETRYING = "retrying"
    STOPPED = "stopped"


@dataclasses.dataclass(frozen=True, slots=True)
class RelayStatus:
    """Where a relay stands, for health checks and metrics."""

    destination: str
    state: RelayState
    checkpoint: int
    sequence: int
    head: int
    lag_events: int
    """Positions between the log's head and the checkpoint."""
    lag_seconds: float
    """Age of the oldest event not yet acknowledged; 0 when the relay has caught up."""
    in_flight: int
    parked: int
    published: int
    """Messages the broker acknowledged since this relay started."""
    breaker: BreakerStatus
    last_error: str | None


@dataclasses.dataclass(slots=True)
class _Slot:
    record: RecordedEvent
    sequence: int | None
    done: bool = False


class _Request:
    def __init__(self, action: str, stream_id: str | None) -> None:
        self.action = action
        self.stream_id = stream_id
        self.future: asyncio.Future[int] = asyncio.get_running_loop().create_future()


class Relay:
    """Publishes the log to one destination; ``run()`` until cancelled, then ``close()``."""

    def __init__(
        self,
        event_store: EventStore,
        publisher: Publisher,
        store: RelayStore,
        *,
        source: str = DEFAULT_SOURCE,
        window: int = 256,
        policy: RetryPolicy = BROKER_RETRY,
        breaker: CircuitBreaker | None = None,
        checkpoint_interval: float = 0.2,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        if window < 1:
            raise ValueError("the relay's window must be 1 or more")
        self.event_store = event_store
        self.publisher = publisher
        self.store = store
        self.destination = publisher.destination
        self.source = source
        self.window = window
        self.policy = policy
        """How the relay retries a broker that fails: its backoff (cap, jitter) between
        tries, and its limit (None: until the broker is back; else the relay stops and
        ``run()`` raises the broker's error once the retries are spent)."""
        self.breaker = breaker or CircuitBreaker(failure_threshold=3)
        self.retries = 0
        """Retries since the relay last got a message acknowledged."""
        self.checkpoint_interval = checkpoint_interval
        self.tracer: Tracer = tracer if tracer is not None else NoTracer()
        self._clock = clock
        self.state = RelayState.STARTING
        self.last_error: str | None = None
        self.published = 0
        # The checkpoint in memory (ahead of the stored one by at most an interval).
        self._position = 0
        self._sequence = 0
        self._stored = (0, 0)
        self._stored_at = 0.0
        self._storing: asyncio.Task[None] | None = None
        self._started = False
        self._parked_from: dict[str, int] = {}
        self._parked: dict[int, ParkedMessage] = {}
        self._window: deque[_Slot] = deque()
        self._held: RecordedEvent | None = None
        self._in_flight = 0
        self._requests: list[_Request] = []
        self._wakeup = asyncio.Event()
        self._running = False
        self._lock = asyncio.Lock()
        self._reached: list[tuple[int, asyncio.Future[None]]] = []
        metrics = metrics if metrics is not None else NoMetrics()
        destination = (self.destination,)
        self._sent = metrics.counter(
            "twofold_relay_sent_messages_total",
            "Messages the relay handed to the broker (again after a failure: counted again).",
            labels=("destination",),
        ).labels(*destination)
        self._acked = metrics.counter(
            "twofold_relay_acked_messages_total",
            "Messages the broker acknowledged.",
            labels=("destination",),
        ).labels(*destination)
        failed = metrics.counter(
            "twofold_relay_failed_messages_total",
            "Messages not acknowledged: unavailable (published again later) or refused (parked).",
            labels=("destination", "reason"),
        )
        self._unavailable = failed.labels(self.destination, "unavailable")
        self._refused = failed.labels(self.destination, "refused")

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the checkpoint and the parked messages; idempotent."""
        if self._started:
            return
        checkpoint = await self.store.prepare(self.destination)
        self._position, self._sequence = checkpoint.position, checkpoint.sequence
        self._stored = (self._position, self._sequence)
        for message in await self.store.parked(self.destination):
            self._parked[message.position] = message
            self._parked_from.setdefault(message.stream_id, message.position)
        self._started = True

    async def run(self) -> None:
        """Publish until cancelled: catch up from the checkpoint, then follow live events."""
        await self.start()
        if self._running:
            raise RuntimeError(f"the relay to {self.destination} is running already")
        self._running = True
        self.retries = 0
        try:
            while True:
                published = self.published
                try:
                    await self.publisher.open()
                    self.state = RelayState.RUNNING
                    await self._pump()
                except PublishError as exc:
                    self.breaker.failure(exc)
                    self.last_error = str(exc)
                    if self.published > published:
                        self.retries = 0  # it got through since the last failure
                    if self.policy.exhausted(self.retries):
                        self.state = RelayState.STOPPED
                        log.error(
                            "relay to %s stops after %d retries: %s",
                            self.destination, self.retries, exc,
                        )  # fmt: skip
                        raise
                    self.state = RelayState.RETRYING
                    delay = max(self.breaker.retry_in(), self.policy.delay(self.retries))
                    self.retries += 1
                    log.warning("relay to %s retries in %.2fs: %s", self.destination, delay, exc)
                    await self._serve_requests_while(delay)
        finally:
            self._running = False
            with contextlib.suppress(Exception):
                await self._store_checkpoint()

    async def close(self) -> None:
        """Store the checkpoint and close the publisher (the stores belong to the caller)."""
        self.state = RelayState.STOPPED
        await self._store_checkpoint()
        await self.publisher.close()

    # -- publishing -----------------------------------------------------------------------

    async def _pump(self) -> None:
        """Publish from the checkpoint on; return never, raise PublishError on a failure.

        One event wakes the loop for everything (a record read, a publish settled, a
        request): each turn costs the same whatever the window's size.
        """
        self._window.clear()
        self._held = None
        next_sequence = self._sequence + 1
        signal = self._wakeup
        incoming: deque[RecordedEvent] = deque()
        room = asyncio.Event()
        room.set()
        feeder = asyncio.create_task(
            _feed(self.event_store.subscribe(after=self._position), incoming, room, signal,
                  self.window),
            name=f"relay-feed-{self.destination}",
        )  # fmt: skip
        feeder.add_done_callback(lambda _: signal.set())
        finished: deque[asyncio.Task[list[PublishError | None]]] = deque()

        def on_done(task: asyncio.Task[list[PublishError | None]]) -> None:
            finished.append(task)
            signal.set()

        # Each task publishes a batch of messages of different streams (publish_many).
        tasks: dict[asyncio.Task[list[PublishError | None]], list[_Slot]] = {}
        in_flight = 0
        busy: set[str] = set()
        failure: PublishError | None = None
        try:
            while True:
                while finished:
                    task = finished.popleft()
                    slots = tasks.pop(task)
                    in_flight -= len(slots)
                    for slot, outcome in zip(slots, self._outcomes(task, slots), strict=True):
                        busy.discard(slot.record.stream_id)
                        failure = await self._settle(outcome, slot) or failure
                self._in_flight = in_flight
                self._advance()
                if self._due():
                    self._store_behind()
                if feeder.done():
                    feeder.result()  # the subscription failed: surface its error
                    raise BrokerUnavailableError(self.destination, "the log subscription ended")
                if failure is not None:
                    if not tasks:
                        raise failure
                elif self._requests:
                    if not tasks and not self._window:
                        await self._serve_requests()
                        next_sequence = self._sequence + 1
                        continue
                else:
                    batch: list[_Slot] = []
                    while in_flight + len(batch) < self.window:
                        if self._held is None:
                            if not incoming:
                                break
                            self._held = incoming.popleft()
                            room.set()
                        held = self._held
                        if held.stream_id in busy:
                            break  # its stream's previous message is not acknowledged yet
                        self._held = None
                        slot = await self._slot(held, next_sequence)
                        self._window.append(slot)
                        if slot.done:
                            self._advance()
                            continue
                        next_sequence += 1
                        busy.add(held.stream_id)
                        batch.append(slot)
                    if batch:
                        messages = [BusMessage(record=slot.record, sequence=slot.sequence or 0,
                                               source=self.source) for slot in batch]  # fmt: skip
                        task = asyncio.create_task(self._publish(messages))
                        tasks[task] = batch
                        in_flight += len(batch)
                        self._sent.inc(len(batch))
                        task.add_done_callback(on_done)
                    self._in_flight = in_flight
                if finished:
                    continue
                await signal.wait()
                signal.clear()
        finally:
            for pending in (*tasks, feeder):
                pending.cancel()
            for pending in (*tasks, feeder):
                with contextlib.suppress(BaseException):
                    await pending
            self._in_flight = 0

    async def _publish(self, messages: list[BusMessage]) -> list[PublishError | None]:
        """Publish one batch, in a producer span linked to the commands that recorded it."""
        if not self.tracer.enabled:
            return await self.publisher.publish_many(messages)
        records = [message.record for message in messages]
        with self.tracer.span(
            f"relay {self.destination} publish",
            kind="producer",
            attributes={
                "messaging.destination.name": self.destination,
                "messaging.operation.type": "send",
                "messaging.batch.message_count": len(messages),
                "twofold.position": records[-1].position,
            },
            links=event_contexts(records),
        ) as span:
            outcomes = await self.publisher.publish_many(messages)
            failed = [outcome for outcome in outcomes if outcome is not None]
            if failed:
                span.set_attribute("twofold.failed_messages", len(failed))
                span.record_error(failed[0])
            return outcomes

    def _outcomes(
        self, task: asyncio.Task[list[PublishError | None]], slots: list[_Slot]
    ) -> list[BaseException | None]:
        """One outcome per slot; a batch that failed as a whole fails each of its slots."""
        try:
            outcomes = task.result()
        except Exception as exc:
            return [exc] * len(slots)
        if len(outcomes) != len(slots):
            error = RuntimeError(f"{len(outcomes)} outcomes for {len(slots)} messages")
            return [error] * len(slots)
        return list(outcomes)

    async def _slot(self, record: RecordedEvent, next_sequence: int) -> _Slot:
        """The record's place in the window: to publish under ``next_sequence``, or parked."""
        parked = self._parked.get(record.position)
        if parked is not None:
            return _Slot(record, parked.sequence, done=True)
        first = self._parked_from.get(record.stream_id)
        if first is not None and record.position > first:
            message = ParkedMessage(
                destination=self.destination,
                position=record.position,
                stream_id=record.stream_id,
                sequence=None,
                error=_BEHIND_PARKED,
                parked_at=datetime.now(UTC),
            )
            await self.store.park([message])
            self._parked[record.position] = message
            return _Slot(record, None, done=True)
        return _Slot(record, next_sequence)

    async def _settle(self, outcome: BaseException | None, slot: _Slot) -> PublishError | None:
        try:
            if outcome is not None:
                raise outcome
        except MessageRefusedError as refused:
            self._refused.inc()
            record = slot.record
            log.warning(
                "relay to %s parks stream %s at position %d: %s",
                self.destination, record.stream_id, record.position, refused.reason,
            )  # fmt: skip
            message = ParkedMessage(
                destination=self.destination,
                position=record.position,
                stream_id=record.stream_id,
                sequence=slot.sequence,
                error=refused.reason,
                parked_at=datetime.now(UTC),
            )
            await self.store.park([message])
            self._parked[record.position] = message
            self._parked_from.setdefault(record.stream_id, record.position)
            slot.done = True
            return None
        except PublishError as failed:
            self._unavailable.inc()
            return failed
        except Exception as unexpected:  # an adapter's bug must not lose events: retry
            self._unavailable.inc()
            log.exception("publisher to %s failed unexpectedly", self.destination)
            return BrokerUnavailableError(
                self.destination, f"{type(unexpected).__name__}: {unexpected}"
            )
        slot.done = True
        self.published += 1
        self._acked.inc()
        self.breaker.success()
        self.last_error = None
        return None

    def _advance(self) -> None:
        window = self._window
        moved = False
        while window and window[0].done:
            slot = window.popleft()
            self._position = slot.record.position
            if slot.sequence is not None:
                self._sequence = max(self._sequence, slot.sequence)
            moved = True
        if moved and self._reached:
            still = []
            for position, future in self._reached:
                if self._position >= position:
                    if not future.done():
                        future.set_result(None)
                else:
                    still.append((position, future))
            self._reached = still

    def _due(self) -> bool:
        if (self._position, self._sequence) == self._stored:
            return False
        return not self._window or time.monotonic() - self._stored_at >= self.checkpoint_interval

    def _store_behind(self) -> None:
        """Store the checkpoint without holding up publishing (a disk's fsync can take long);
        one write at a time, and an error of the last one surfaces here."""
        storing = self._storing
        if storing is not None:
            if not storing.done():
                return
            self._storing = None
            storing.result()
        if (self._position, self._sequence) == self._stored:
            return
        task = asyncio.create_task(self._write_checkpoint())
        task.add_done_callback(lambda _: self._wakeup.set())  # store what came meanwhile
        self._storing = task

    async def _store_checkpoint(self) -> None:
        """Store the checkpoint now, after the write in the background if there is one."""
        storing, self._storing = self._storing, None
        if storing is not None:
            await storing
        await self._write_checkpoint()

    async def _write_checkpoint(self) -> None:
        position, sequence = self._position, self._sequence
        if (position, sequence) == self._stored:
            return
        self._stored_at = time.monotonic()
        await self.store.advance(self.destination, position=position, sequence=sequence)
        self._stored = (position, sequence)

    async def reached(self, position: int) -> None:
        """Return once the checkpoint (in memory) is at or past ``position``."""
        if self._position >= position:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reached.append((position, future))
        await future

    # -- parked messages ------------------------------------------------------------------

    async def parked(self, stream_id: str | None = None) -> list[ParkedMessage]:
        await self.start()
        return await self.store.parked(self.destination, stream_id)

    async def retry(self, stream_id: str | None = None) -> int:
        """Publish parked messages again, stream by stream, in order; return how many went.

        A stream whose first parked message is refused again stays parked, whole.
        """
        return await self._request("retry", stream_id)

    async def skip(self, stream_id: str | None = None) -> int:
        """Give up parked messages: send skip markers in their place; return how many."""
        return await self._request("skip", stream_id)

    async def _request(self, action: str, stream_id: str | None) -> int:
        await self.start()
        if not self._running:
            async with self._lock:
                await self.publisher.open()
                return await self._release(action, stream_id)
        request = _Request(action, stream_id)
        self._requests.append(request)
        self._wakeup.set()
        return await request.future

    async def _serve_requests(self) -> None:
        requests, self._requests = self._requests, []
        for request in requests:
            try:
                async with self._lock:
                    result = await self._release(request.action, request.stream_id)
            except Exception as exc:
                if not request.future.done():
                    request.future.set_exception(exc)
            else:
                if not request.future.done():
                    request.future.set_result(result)

    async def _serve_requests_while(self, delay: float) -> None:
        """Sleep ``delay`` seconds, answering retry/skip requests meanwhile (they fail fast
        with the broker's error, or succeed if it is back)."""
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), left)
            self._wakeup.clear()
            if self._requests:
                await self._serve_requests()

    async def _release(self, action: str, stream_id: str | None) -> int:
        """Retry or skip parked messages; the window is empty when this runs."""
        await self._store_checkpoint()
        messages = await self.store.parked(self.destination, stream_id)
        streams: dict[str, list[ParkedMessage]] = {}
        for message in messages:
            streams.setdefault(message.stream_id, []).append(message)
        released = 0
        for stream, parked in streams.items():
            for message in parked:
                record = await self._record_at(message.position)
                sequence = self._sequence + 1
                # Reserve the number first: a crash before the release leaves a hole in the
                # numbering, never one number on two events.
                await self.store.advance(
                    self.destination, position=self._position, sequence=sequence
                )
                self._sequence = sequence
                self._stored = (self._position, sequence)
                if action == "skip":
                    marker = msgspec.structs.replace(record, data=b"null")
                    out = BusMessage(
                        record=marker, sequence=sequence, source=self.source, skipped=True
                    )
                else:
                    out = BusMessage(record=record, sequence=sequence, source=self.source)
                try:
                    await self.publisher.publish(out)
                except MessageRefusedError as refused:
                    log.warning("parked stream %s is refused again: %s", stream, refused.reason)
                    break
                await self.store.release(self.destination, [message.position])
                self._parked.pop(message.position, None)
                released += 1
            else:
                self._parked_from.pop(stream, None)
        return released

    async def _record_at(self, position: int) -> RecordedEvent:
        page = await self.event_store.read_all(after=position - 1, limit=1)
        if not page or page[0].position != position:
            raise LookupError(f"position {position} is not in the event store")
        return page[0]

    # -- status ---------------------------------------------------------------------------

    async def status(self) -> RelayStatus:
        head = await self.event_store.head_position()
        oldest: datetime | None = None
        if self._window:
            oldest = self._window[0].record.recorded_at
        elif self._held is not None:
            oldest = self._held.recorded_at
        elif head > self._position:
            page = await self.event_store.read_all(after=self._position, limit=1)
            oldest = page[0].recorded_at if page else None
        lag_seconds = max(0.0, self._clock() - oldest.timestamp()) if oldest else 0.0
        return RelayStatus(
            destination=self.destination,
            state=self.state,
            checkpoint=self._position,
            sequence=self._sequence,
            head=head,
            lag_events=max(0, head - self._position),
            lag_seconds=lag_seconds,
            in_flight=self._in_flight,
            parked=len(self._parked),
            published=self.published,
            breaker=self.breaker.status(),
            last_error=self.last_error,
        )


async def _feed(
    subscription: AsyncIterator[RecordedEvent],
    incoming: deque[RecordedEvent],
    room: asyncio.Event,
    signal: asyncio.Event,
    limit: int,
) -> None:
    """Read the log into ``incoming``, at most ``limit`` ahead of the relay."""
    try:
        async for record in subscription:
            incoming.append(record)
            signal.set()
            if len(incoming) >= limit:
                room.clear()
                await room.wait()
    finally:
        aclose = getattr(subscription, "aclose", None)
        if aclose is not None:
            await aclose()

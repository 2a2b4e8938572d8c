"""Loading aggregates (snapshot plus later events) and saving what they recorded."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from twofold.application.metrics import SIZE_BUCKETS, Metrics, NoMetrics
from twofold.application.ports import EventStore
from twofold.application.tracing import AttributeValue, NoTracer, Tracer
from twofold.codec import Codec, decode_json, encode_json
from twofold.domain.aggregate import Aggregate
from twofold.domain.messages import Metadata
from twofold.errors import (
    AggregateExistsError,
    AggregateNotFoundError,
    ConcurrencyError,
    SerializationError,
)
from twofold.records import (
    NO_STREAM,
    AppendResult,
    ExpectedVersion,
    IdempotencyRecord,
    Snapshot,
    StreamAppend,
    StreamData,
)

__all__ = ["Repository"]

A = TypeVar("A", bound=Aggregate)
R = TypeVar("R")
log = logging.getLogger("twofold.repository")

# Streams known to hold events. Events are never deleted, so a stream that exists keeps
# existing: a positive answer stays true and "the customer must exist" checks need not ask
# the store again. Bounded; when full it starts over.
_KNOWN_STREAMS = 65_536


class Repository:
    """Aggregates in and out of one event store, through one codec."""

    def __init__(
        self,
        store: EventStore,
        codec: Codec,
        *,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.store = store
        self.codec = codec
        self._tracer = tracer if tracer is not None else NoTracer()
        metrics = metrics if metrics is not None else NoMetrics()
        self._append_errors = metrics.counter(
            "twofold_append_errors_total",
            "Appends refused or failed, by error type (ConcurrencyError: another writer won).",
            labels=("error",),
        )
        self._append_duration = metrics.histogram(
            "twofold_append_duration_seconds",
            "Time to append, commit included; its _count counts the appends (one transaction "
            "each), errors included.",
        ).labels()
        self._append_size = metrics.histogram(
            "twofold_append_events",
            "Events per append; its _sum counts the events appended.",
            buckets=SIZE_BUCKETS,
        ).labels()
        self._registered: set[type[Aggregate]] = set()
        self._known: set[str] = set()
        # A store that can read narrowly (StreamDataReader) loads aggregates faster.
        self._read_data: Callable[..., Awaitable[list[StreamData]]] | None = getattr(
            store, "read_stream_data", None
        )

    def _knows(self, stream_id: str) -> None:
        if len(self._known) >= _KNOWN_STREAMS:
            self._known.clear()
        self._known.add(stream_id)

    def _register(self, cls: type[Aggregate]) -> None:
        # An aggregate's events are registered with the codec the first time it is used.
        if cls not in self._registered:
            self.codec.register(*cls.event_types())
            self._registered.add(cls)

    async def load(self, cls: type[A], id: str) -> A | None:
        """The aggregate rebuilt from its latest usable snapshot and later events, or None."""
        self._register(cls)
        aggregate = cls(id)
        stream_id = aggregate.stream_id
        if cls.snapshot_every:
            snapshot = await self.store.load_snapshot(stream_id)
            if snapshot is not None:
                self._restore(aggregate, snapshot)
        apply = aggregate.apply_stored
        if self._read_data is not None:
            rows = await self._read_data(stream_id, from_version=aggregate.version + 1)
            self.codec.replay(rows, apply)
        else:
            events = await self.store.read_stream(stream_id, from_version=aggregate.version + 1)
            decode = self.codec.decode
            for record in events:
                apply(decode(record), record.stream_version)
        if aggregate.version == 0:
            return None
        self._knows(stream_id)
        return aggregate

    async def get(self, cls: type[A], id: str) -> A:
        """The aggregate, or AggregateNotFoundError when it has no events."""
        aggregate = await self.load(cls, id)
        if aggregate is None:
            raise AggregateNotFoundError(cls.__name__, id)
        return aggregate

    async def exists(self, cls: type[Aggregate], id: str) -> bool:
        stream_id = cls.stream_id_for(id)
        if stream_id in self._known:
            return True
        if await self.store.stream_version(stream_id) > 0:
            self._knows(stream_id)
            return True
        return False

    async def save(
        self,
        aggregate: Aggregate,
        metadata: Metadata | None = None,
        *,
        expected_version: ExpectedVersion | None = None,
    ) -> AppendResult | None:
        """Append the aggregate's pending events; None when it recorded nothing.

        ``expected_version`` defaults to the version the aggregate was loaded at, so a
        concurrent writer makes this raise ConcurrencyError instead of being overwritten.
        """
        pending = aggregate.pending_events
        if not pending:
            return None
        self._register(type(aggregate))
        encoded_metadata = self.codec.encode_metadata(metadata)
        new_events = [self.codec.new_event(event, encoded_metadata) for event in pending]
        if expected_version is None:
            expected_version = aggregate.version if aggregate.version else NO_STREAM
        try:
            result = await self._measured(
                len(new_events),
                aggregate.stream_id,
                lambda: self.store.append(
                    aggregate.stream_id, new_events, expected_version=expected_version
                ),
            )
        except ConcurrencyError:
            if expected_version is NO_STREAM or expected_version == 0:
                raise AggregateExistsError(type(aggregate).__name__, aggregate.id) from None
            raise
        await self._saved(aggregate, result)
        return result

    async def save_all(
        self,
        aggregates: Sequence[Aggregate],
        metadata: Metadata | None = None,
        *,
        idempotency: IdempotencyRecord | None = None,
    ) -> tuple[AppendResult, ...]:
        """Append the pending events of every aggregate in one transaction: all or none.

        Each aggregate's stream is checked against the version it was loaded at; a
        concurrent writer to any of them makes this raise ConcurrencyError (or
        AggregateExistsError for one being created) and nothing is stored. The results
        follow the order of ``aggregates`` that recorded events; () when none did (then
        ``idempotency`` is not stored either). ``idempotency`` is stored with the events.
        """
        saving = [aggregate for aggregate in aggregates if aggregate.pending_events]
        if not saving:
            return ()
        if len(saving) == 1 and idempotency is None:
            # One stream: the store's single append, its fastest path.
            result = await self.save(saving[0], metadata)
            assert result is not None
            return (result,)
        encoded_metadata = self.codec.encode_metadata(metadata)
        appends: list[StreamAppend] = []
        for aggregate in saving:
            self._register(type(aggregate))
            appends.append(
                StreamAppend(
                    stream_id=aggregate.stream_id,
                    events=tuple(
                        self.codec.new_event(event, encoded_metadata)
                        for event in aggregate.pending_events
                    ),
                    expected_version=aggregate.version if aggregate.version else NO_STREAM,
                )
            )
        try:
            results = await self._measured(
                sum(len(a.events) for a in appends),
                ",".join(a.stream_id for a in appends),
                lambda: self.store.append_streams(appends, idempotency=idempotency),
            )
        except ConcurrencyError as exc:
            created = next(
                (a for a in saving if a.stream_id == exc.stream_id and not a.version), None
            )
            if created is not None:
                raise AggregateExistsError(type(created).__name__, created.id) from None
            raise
        for aggregate, result in zip(saving, results, strict=True):
            await self._saved(aggregate, result)
        return results

    async def _measured(self, count: int, streams: str, append: Callable[[], Awaitable[R]]) -> R:
        """Run ``append`` (of ``count`` events to ``streams``), timed, counted, in a span."""
        started = time.perf_counter()
        try:
            if self._tracer.enabled:
                attributes: dict[str, AttributeValue] = {
                    "twofold.stream_id": streams,
                    "twofold.events": count,
                }
                with self._tracer.span("append", kind="client", attributes=attributes):
                    result = await append()
            else:
                result = await append()
        except Exception as error:
            self._append_errors.labels(type(error).__name__).inc()
            raise
        finally:
            self._append_duration.observe(time.perf_counter() - started)
        self._append_size.observe(count)
        return result

    async def position_of(self, aggregate: Aggregate) -> int:
        """The global position of the aggregate's last stored event; 0 when it has none."""
        if not aggregate.version:
            return 0
        last = await self.store.read_stream(
            aggregate.stream_id, from_version=aggregate.version, limit=1
        )
        return last[0].position if last else 0

    async def _saved(self, aggregate: Aggregate, result: AppendResult) -> None:
        before = aggregate.version
        aggregate.mark_saved(result.version)
        self._knows(result.stream_id)
        every = type(aggregate).snapshot_every
        if every and result.version // every > before // every:
            await self._snapshot(aggregate)

    async def _snapshot(self, aggregate: Aggregate) -> None:
        cls = type(aggregate)
        snapshot = Snapshot(
            stream_id=aggregate.stream_id,
            aggregate_type=cls.__name__,
            version=aggregate.version,
            schema_version=cls.snapshot_version,
            state=encode_json(aggregate.snapshot_state()),
        )
        await self.store.save_snapshot(snapshot)

    def _restore(self, aggregate: Aggregate, snapshot: Snapshot) -> None:
        cls = type(aggregate)
        # A snapshot of another shape is ignored, never misread: the events are the truth.
        if snapshot.schema_version != cls.snapshot_version or snapshot.aggregate_type != (
            cls.__name__
        ):
            return
        try:
            raw: dict[str, Any] = decode_json(snapshot.state)
            fields = cls.state_fields()
            state = {
                name: self.codec.convert(value, fields[name])
                for name, value in raw.items()
                if name in fields
            }
        except (SerializationError, ValueError) as exc:
            log.warning("ignoring unreadable snapshot of %s: %s", snapshot.stream_id, exc)
            return
        aggregate.restore_state(state)
        aggregate.version = snapshot.version

"""An event store in a Python list: for tests and examples, gone when the process ends.

It keeps every promise of the EventStore port except durability, and applies the same
input checks and retry rules as the SQLite and PostgreSQL stores (``adapters._append_rules``),
so code tested against it behaves the same on a real backend. Use it from one event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import UTC, datetime

from twofold.adapters import _append_rules as rules
from twofold.adapters.memory._keys import KeyTable
from twofold.errors import (
    DuplicateEventError,
    EventStoreError,
    IdempotencyKeyTakenError,
    StoreClosedError,
)
from twofold.records import (
    AppendResult,
    ExpectedVersion,
    IdempotencyRecord,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
    StreamData,
    StreamInfo,
)

__all__ = ["InMemoryEventStore"]


class InMemoryEventStore:
    """The EventStore port in memory; ``close()`` only makes later calls fail."""

    def __init__(self) -> None:
        # Invariant: self._log[i].position == i + 1, so a position indexes the log directly.
        self._log: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._by_id: dict[uuid.UUID, RecordedEvent] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._keys = KeyTable()  # idempotency keys, shared with InMemoryIdempotencyStore
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False
        self._identity = str(uuid.uuid4())  # this log lives and dies with the object

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: ExpectedVersion,
    ) -> AppendResult:
        rules.validate_append(stream_id, events, expected_version)
        self._check_open()
        # No await below: the whole append runs without another task in between, which is
        # what makes it atomic here.
        stream = self._streams.get(stream_id, [])
        first = self._by_id.get(events[0].event_id)
        if first is not None:
            # Possibly a retry of an append that succeeded: answer as the first time did.
            origin = self._streams[first.stream_id]
            return rules.match_retry(
                stream_id, events, expected_version, first, origin[first.stream_version - 1 :]
            )
        rules.check_expected_version(stream_id, expected_version, len(stream))
        self._check_unseen(events)
        result = self._record(stream_id, events, len(self._log))
        self._commit((result,))
        return result

    async def append_streams(
        self,
        appends: Sequence[StreamAppend],
        *,
        idempotency: IdempotencyRecord | None = None,
    ) -> tuple[AppendResult, ...]:
        rules.validate_streams(appends, idempotency)
        self._check_open()
        # No await below, as in append: the whole call is one step, all or none.
        firsts = [self._by_id.get(append.events[0].event_id) for append in appends]
        if all(first is not None for first in firsts):
            # Every part stored already: a retry of this very call.
            return tuple(
                rules.match_retry(
                    append.stream_id,
                    append.events,
                    append.expected_version,
                    first,
                    self._streams[first.stream_id][first.stream_version - 1 :],
                )
                for append, first in zip(appends, firsts, strict=True)
                if first is not None
            )
        for append in appends:
            rules.check_expected_version(
                append.stream_id,
                append.expected_version,
                len(self._streams.get(append.stream_id, ())),
            )
        for append in appends:
            self._check_unseen(append.events)
        if idempotency is not None:
            seconds = idempotency.keep_for.total_seconds()
            if self._keys.get(idempotency.key, seconds) is not None:
                raise IdempotencyKeyTakenError(idempotency.key)
        results: list[AppendResult] = []
        position = len(self._log)
        for append in appends:
            results.append(self._record(append.stream_id, append.events, position))
            position = results[-1].position
        written = tuple(results)
        if idempotency is not None:
            try:
                answer = rules.check_answer(idempotency.answer(written))
            except Exception as exc:
                raise EventStoreError(
                    f"the idempotency record's answer failed ({exc!r}); nothing was appended"
                ) from exc
            self._keys.put(idempotency.key, idempotency.fingerprint, answer, seconds)
        self._commit(written)
        return written

    def _check_unseen(self, events: Sequence[NewEvent]) -> None:
        for event in events:
            taken = self._by_id.get(event.event_id)
            if taken is not None:
                raise DuplicateEventError(
                    str(event.event_id),
                    f"it is at version {taken.stream_version} of stream {taken.stream_id!r}",
                )

    def _record(self, stream_id: str, events: Sequence[NewEvent], head: int) -> AppendResult:
        """The events as they will be stored after position ``head``; stores nothing."""
        version = len(self._streams.get(stream_id, ()))
        now = datetime.now(UTC)
        recorded = tuple(
            RecordedEvent(
                event_id=event.event_id,
                stream_id=stream_id,
                stream_version=version + offset,
                position=head + offset,
                type=event.type,
                schema_version=event.schema_version,
                data=event.data,
                metadata=event.metadata,
                recorded_at=now,
            )
            for offset, event in enumerate(events, start=1)
        )
        last = recorded[-1]
        return AppendResult(
            stream_id=stream_id,
            version=last.stream_version,
            position=last.position,
            events=recorded,
        )

    def _commit(self, results: Sequence[AppendResult]) -> None:
        for result in results:
            self._log.extend(result.events)
            self._streams.setdefault(result.stream_id, []).extend(result.events)
            for stored in result.events:
                self._by_id[stored.event_id] = stored
        self._wake()

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        rules.check_read_stream(stream_id, from_version, limit)
        self._check_open()
        stream = self._streams.get(stream_id, [])
        end = None if limit is None else from_version - 1 + limit
        return stream[from_version - 1 : end]

    async def read_stream_data(self, stream_id: str, *, from_version: int = 1) -> list[StreamData]:
        """``read_stream`` narrowed to what loading an aggregate needs (StreamDataReader)."""
        return [
            (e.stream_version, e.type, e.schema_version, e.data)
            for e in await self.read_stream(stream_id, from_version=from_version)
        ]

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        rules.check_read_all(after, limit, types)
        self._check_open()
        return self._page(after, limit, None if types is None else frozenset(types))[0]

    def subscribe(
        self, *, after: int = 0, types: Collection[str] | None = None
    ) -> AsyncIterator[RecordedEvent]:
        rules.check_read_all(after, 1, types)
        self._check_open()
        return self._follow(after, None if types is None else frozenset(types))

    async def list_streams(self, *, after: str | None = None, limit: int = 100) -> list[StreamInfo]:
        rules.check_page(after, limit)
        self._check_open()
        ids = sorted(
            (s for s in self._streams if after is None or _utf8(s) > _utf8(after)), key=_utf8
        )[:limit]
        return [
            StreamInfo(
                stream_id=s,
                version=len(self._streams[s]),
                last_position=self._streams[s][-1].position,
            )
            for s in ids
        ]

    async def stream_version(self, stream_id: str) -> int:
        rules.check_stream_id(stream_id)
        self._check_open()
        return len(self._streams.get(stream_id, ()))

    async def head_position(self) -> int:
        self._check_open()
        return len(self._log)

    async def identity(self) -> str:
        self._check_open()
        return self._identity

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        if not isinstance(snapshot, Snapshot):
            raise TypeError(f"save_snapshot expects a Snapshot, got {type(snapshot).__name__}")
        rules.check_stream_id(snapshot.stream_id)
        self._check_open()
        current = self._snapshots.get(snapshot.stream_id)
        # A snapshot never moves backwards; one at the same version replaces the old one, so
        # a snapshot of a new schema version takes over.
        if current is None or snapshot.version >= current.version:
            self._snapshots[snapshot.stream_id] = snapshot

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        rules.check_stream_id(stream_id)
        self._check_open()
        return self._snapshots.get(stream_id)

    async def close(self) -> None:
        self._closed = True
        self._wake()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError()

    def _page(
        self, after: int, limit: int, types: frozenset[str] | None
    ) -> tuple[list[RecordedEvent], int]:
        """Up to ``limit`` events after ``after``, and the position the scan reached."""
        found: list[RecordedEvent] = []
        reached = after
        for event in self._log[after:]:
            reached = event.position
            if types is None or event.type in types:
                found.append(event)
                if len(found) == limit:
                    break
        return found, reached

    async def _follow(
        self, after: int, types: frozenset[str] | None
    ) -> AsyncIterator[RecordedEvent]:
        position = after
        while True:
            self._check_open()
            events, position = self._page(position, 500, types)
            if events:
                for event in events:
                    yield event
                continue
            # Nothing new: sleep until the next append (or close) wakes every waiter.
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def _utf8(stream_id: str) -> bytes:
    return stream_id.encode()

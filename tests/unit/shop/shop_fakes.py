"""In-memory fakes of the ports the shop uses: views, an event log, a command bus.

They check what a real store would refuse (non-JSON documents, filters on fields that are
not indexed), so a projection that passes here does not fail on SQLite for a silly reason.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec

from twofold.application.projections import Projection
from twofold.application.views import Collection
from twofold.codec import Codec
from twofold.domain.aggregate import Aggregate
from twofold.domain.messages import Command, Event, Query
from twofold.errors import AggregateExistsError, AggregateNotFoundError
from twofold.examples import shop
from twofold.records import RecordedEvent

A = TypeVar("A", bound=Aggregate)
R = TypeVar("R")
Document = dict[str, Any]
START = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


class FakeViews:
    """Collections of JSON documents, as a read store keeps them."""

    def __init__(self, collections: Iterable[Collection]) -> None:
        self.indexes: dict[str, dict[str, type]] = {}
        self.documents: dict[str, dict[str, str]] = {}
        for collection in collections:
            assert collection.name not in self.indexes, f"{collection.name} declared twice"
            self.indexes[collection.name] = dict(collection.indexes)
            self.documents[collection.name] = {}

    def put(self, collection: str, key: str, document: Document) -> None:
        assert isinstance(key, str) and key, key
        for field, kind in self.indexes[collection].items():
            value = document.get(field)
            assert value is None or type(value) is kind, f"{collection}.{field}={value!r}"
        # Stored as JSON text: a Decimal, datetime or NaN fails here as it would in SQLite.
        self.documents[collection][key] = json.dumps(document, allow_nan=False)

    def get(self, collection: str, key: str) -> Document | None:
        text = self.documents[collection].get(key)
        return None if text is None else json.loads(text)

    def all(self, collection: str) -> dict[str, Document]:
        return {key: json.loads(text) for key, text in self.documents[collection].items()}

    def select(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> list[tuple[str, Document]]:
        known = self.indexes[collection]
        for field in (*(where or {}), *(between or {})):
            assert field == "key" or field in known, f"{collection}.{field} is not indexed"
        rows = []
        for key in sorted(self.documents[collection]):
            document = json.loads(self.documents[collection][key])
            row = {**document, "key": key}
            if any(row.get(f) != v for f, v in (where or {}).items()):
                continue
            if any(not _within(row.get(f), lo, hi) for f, (lo, hi) in (between or {}).items()):
                continue
            rows.append((key, document))
        return rows


def _within(value: Any, low: Any, high: Any) -> bool:
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value <= high)


class FakeViewTransaction:
    """What a projection handler sees; ``record`` is set per event by ``project``."""

    record: RecordedEvent

    def __init__(self, views: FakeViews) -> None:
        self.views = views

    def get(self, collection: str, key: str) -> Document | None:
        return self.views.get(collection, key)

    def put(self, collection: str, key: str, document: Document) -> None:
        self.views.put(collection, key, document)

    def delete(self, collection: str, key: str) -> None:
        self.views.documents[collection].pop(key, None)

    def find(self, collection: str, where: Mapping[str, Any]) -> list[Document]:
        return [document for _, document in self.views.select(collection, where)]


class FakeViewReader:
    """What a query handler sees."""

    def __init__(self, views: FakeViews) -> None:
        self.views = views

    async def get(self, collection: str, key: str) -> Document | None:
        return self.views.get(collection, key)

    async def get_json(self, collection: str, key: str) -> bytes | None:
        document = self.views.get(collection, key)
        return None if document is None else msgspec.json.encode(document)

    async def find(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
        order_by: Sequence[tuple[str, str]] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Document]:
        rows = self.views.select(collection, where, between)
        for field, direction in reversed(order_by):
            assert field == "key" or field in self.views.indexes[collection], field
            assert direction in ("asc", "desc"), direction
            rows.sort(key=_sort_key(field), reverse=direction == "desc")
        rows = rows[offset:]
        if limit is not None:
            rows = rows[:limit]
        return [document for _, document in rows]

    async def count(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> int:
        return len(self.views.select(collection, where, between))


def _sort_key(field: str) -> Callable[[tuple[str, Document]], tuple[bool, Any]]:
    """Sort by one field, None first (as SQL sorts NULL in ascending order)."""

    def key(row: tuple[str, Document]) -> tuple[bool, Any]:
        value = row[0] if field == "key" else row[1].get(field)
        return (value is not None, value if value is not None else 0)

    return key


class EventLog:
    """Events as an event store records them: stream versions, positions, one second apart."""

    def __init__(self, codec: Codec, *, start: datetime = START) -> None:
        self.codec = codec
        self.records: list[RecordedEvent] = []
        self.clock = start

    def append(self, stream_id: str, events: Sequence[Event]) -> list[RecordedEvent]:
        version = self.version(stream_id)
        added = []
        for event in events:
            new = self.codec.new_event(event)
            version += 1
            record = RecordedEvent(
                event_id=new.event_id,
                stream_id=stream_id,
                stream_version=version,
                position=len(self.records) + 1,
                type=new.type,
                schema_version=new.schema_version,
                data=new.data,
                metadata=new.metadata,
                recorded_at=self.clock,
            )
            self.clock += timedelta(seconds=1)
            self.records.append(record)
            added.append(record)
        return added

    def version(self, stream_id: str) -> int:
        return sum(1 for record in self.records if record.stream_id == stream_id)

    def stream(self, stream_id: str) -> list[RecordedEvent]:
        return [record for record in self.records if record.stream_id == stream_id]


def project(
    projection: Projection, codec: Codec, views: FakeViews, records: Iterable[RecordedEvent]
) -> None:
    """Apply the records a projection handles, in order, as its runner would."""
    handlers = projection.bind(codec)
    tx = FakeViewTransaction(views)
    for record in records:
        handler = handlers.get(record.type)
        if handler is not None:
            tx.record = record
            handler(codec.decode(record), tx)


class FakeCommandContext:
    """A unit of work over an EventLog, with CommandContext's verbs."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.touched: list[Aggregate] = []

    async def load(self, cls: type[A], id: str) -> A:
        records = self.log.stream(cls.stream_id_for(id))
        if not records:
            raise AggregateNotFoundError(cls.__name__, id)
        aggregate = cls(id)
        for record in records:
            aggregate.apply_stored(self.log.codec.decode(record), record.stream_version)
        self.touched.append(aggregate)
        return aggregate

    def create(self, cls: type[A], id: str) -> A:
        aggregate = cls(id)
        self.touched.append(aggregate)
        return aggregate

    async def exists(self, cls: type[Aggregate], id: str) -> bool:
        return self.log.version(cls.stream_id_for(id)) > 0

    def commit(self) -> list[RecordedEvent]:
        written: list[RecordedEvent] = []
        for aggregate in self.touched:
            if not aggregate.pending_events:
                continue
            if self.log.version(aggregate.stream_id) != aggregate.version:
                raise AggregateExistsError(type(aggregate).__name__, aggregate.id)
            written += self.log.append(aggregate.stream_id, aggregate.pending_events)
            aggregate.mark_saved(self.log.version(aggregate.stream_id))
        return written


Handler = Callable[[Any, Any], Awaitable[Any]]


class FakeShop:
    """The whole shop on fakes: commands → log → every projection → queries."""

    def __init__(self) -> None:
        self.codec = Codec(shop.EVENTS)
        self.log = EventLog(self.codec)
        self.projections = [cls() for cls in shop.PROJECTIONS]
        self.views = FakeViews(c for p in self.projections for c in p.collections)
        self.reader = FakeViewReader(self.views)
        self.command_handlers: dict[type[Command], Handler] = {}
        self.query_handlers: dict[type[Query[Any]], tuple[Handler, tuple[str, ...]]] = {}
        self.json_handlers: dict[type[Query[Any]], Handler] = {}
        shop.register(self, self)  # type: ignore[arg-type]  # duck-typed fake buses

    # The two registration verbs of CommandBus and QueryBus.
    def register(
        self,
        message_type: Any,
        handler: Handler,
        *,
        reads: Sequence[str] = (),
        json: Handler | None = None,
    ) -> None:
        if issubclass(message_type, Command):
            assert message_type not in self.command_handlers
            self.command_handlers[message_type] = handler
        else:
            assert reads and all(r in {p.name for p in self.projections} for r in reads)
            self.query_handlers[message_type] = (handler, tuple(reads))
            if json is not None:
                self.json_handlers[message_type] = json

    async def dispatch(self, command: Command) -> list[RecordedEvent]:
        """Validate, handle and save the command, then bring every view up to date."""
        command.validate()
        ctx = FakeCommandContext(self.log)
        await self.command_handlers[type(command)](command, ctx)
        written = ctx.commit()
        for projection in self.projections:
            project(projection, self.codec, self.views, written)
        return written

    async def ask(self, query: Query[R]) -> R:
        handler, _ = self.query_handlers[type(query)]
        answer: R = await handler(query, self.reader)
        return answer

    async def ask_json(self, query: Query[Any]) -> bytes | None:
        answer: bytes | None = await self.json_handlers[type(query)](query, self.reader)
        return answer

    def rebuilt_views(self) -> FakeViews:
        """Fresh views replayed from the whole log, as a rebuild would make them."""
        views = FakeViews(c for p in self.projections for c in p.collections)
        for cls in shop.PROJECTIONS:
            project(cls(), self.codec, views, self.log.records)
        return views

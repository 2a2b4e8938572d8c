"""The EventStore port on PostgreSQL (psycopg 3, asyncio).

One store holds three kinds of connection: one writer (group commit, ``append``), a small
pool for reads and short statements, and one LISTEN connection, opened when the first
subscription starts. Several processes may share a schema: appends stay correct across
processes (unique constraints and version checks in the database), and readers in any
process never miss an event (``_horizon``).

    store = await PostgresEventStore.open("postgresql://127.0.0.1/app", schema="twofold")
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Collection, Sequence
from typing import TYPE_CHECKING, Any

from psycopg import sql

from twofold.adapters import _append_rules as rules
from twofold.adapters.postgres._horizon import VisibilityHorizon
from twofold.adapters.postgres._listener import Listener, Signal
from twofold.adapters.postgres._pool import ConnectionPool, connect
from twofold.adapters.postgres._rows import (
    EVENT_COLUMNS,
    check_text,
    check_texts,
    recorded_event,
)
from twofold.adapters.postgres._urls import DEFAULT_SCHEMA, check_schema_name
from twofold.adapters.postgres.append.writer import BatchWriter
from twofold.adapters.postgres.migrations import migrate
from twofold.errors import ConfigurationError, StoreClosedError
from twofold.records import (
    AppendResult,
    ExpectedVersion,
    IdempotencyRecord,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
    StreamInfo,
)

if TYPE_CHECKING:
    from twofold.adapters.postgres.inline import InlineProjection

__all__ = ["DEFAULT_SCHEMA", "PostgresEventStore", "check_schema_name"]

_SUBSCRIBE_PAGE = 500


def _channel(schema: str) -> str:
    # A channel name is an identifier (at most 63 bytes); long schema names are hashed.
    name = f"twofold_{schema}"
    return name if len(name) <= 63 else "twofold_" + hashlib.sha1(schema.encode()).hexdigest()


class PostgresEventStore:
    """The EventStore port on PostgreSQL; build it with ``await PostgresEventStore.open(...)``.

    Options (keyword-only): ``pool_size`` read connections (default 4); ``max_batch``
    events per group commit (default 1000); ``visibility_wait`` seconds a read waits for
    concurrent appends to finish so it sees everything committed before it started
    (default 1.0; see ``_horizon``); ``poll_interval`` seconds between a subscription's
    polls when no notification came (default 2.0); ``notify_interval`` the most seconds
    other processes hear of a commit late, in exchange for fewer notifications (default
    0.01; 0 sends one per commit; see ``_listener``).
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        pool_size: int = 4,
        max_batch: int = 1000,
        visibility_wait: float = 1.0,
        poll_interval: float = 2.0,
        notify_interval: float = 0.01,
    ) -> None:
        self._schema = check_schema_name(schema)
        ident = sql.Identifier(schema)
        self._url = url
        self._pool = ConnectionPool(url, size=pool_size)
        self._signal = Signal()
        channel = _channel(schema)
        self._listener = Listener(url, channel, self._signal)
        self._writer = BatchWriter(
            url,
            ident,
            on_commit=self._committed,
            channel=channel,
            notify_interval=notify_interval,
            own_listener=lambda: self._listener.backend_pid,
            max_events=max_batch,
        )
        self._inline: dict[str, InlineProjection] = {}
        self._horizon = VisibilityHorizon(ident, self._pool.connection)
        self._visibility_wait = visibility_wait
        self._poll_interval = poll_interval
        self._closed = False
        self._q_stream = _q(
            "SELECT {cols} FROM {s}.events WHERE stream_id = %s AND stream_version >= %s"
            " ORDER BY stream_version LIMIT %s",
            ident,
        )
        self._q_all = _q(
            "SELECT {cols} FROM {s}.events WHERE position > %s AND position <= %s"
            " ORDER BY position LIMIT %s",
            ident,
        )
        self._q_all_types = _q(
            "SELECT {cols} FROM {s}.events WHERE position > %s AND position <= %s"
            " AND type = ANY(%s::text[]) ORDER BY position LIMIT %s",
            ident,
        )
        # In the order of the (stream_id, stream_version) index: the database's collation.
        self._q_streams = _q(
            "SELECT stream_id, max(stream_version), max(position) FROM {s}.events "
            "WHERE stream_id > %s GROUP BY stream_id ORDER BY stream_id LIMIT %s",
            ident,
        )
        self._q_version = _q(
            "SELECT coalesce(max(stream_version), 0) FROM {s}.events WHERE stream_id = %s",
            ident,
        )
        self._q_head = _q(
            "SELECT coalesce(max(position), 0) FROM {s}.events WHERE position <= %s", ident
        )
        self._q_identity = _q("SELECT identity FROM {s}.store_identity", ident)
        self._identity: str | None = None
        self._q_save_snapshot = _q(
            "INSERT INTO {s}.snapshots AS old"
            " (stream_id, aggregate_type, version, schema_version, state)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (stream_id) DO UPDATE"
            " SET aggregate_type = excluded.aggregate_type, version = excluded.version,"
            " schema_version = excluded.schema_version, state = excluded.state,"
            " saved_at = now()"
            # A snapshot never moves backwards; one at the same version replaces the old
            # one, so a snapshot of a new schema version takes over.
            " WHERE old.version <= excluded.version",
            ident,
        )
        self._q_load_snapshot = _q(
            "SELECT stream_id, aggregate_type, version, schema_version, state"
            " FROM {s}.snapshots WHERE stream_id = %s",
            ident,
        )

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        migrate_schema: bool = True,
        **options: Any,
    ) -> PostgresEventStore:
        """Connect, create or upgrade the schema (unless ``migrate_schema=False``), and
        return a ready store."""
        store = cls(url, schema=schema, **options)
        if migrate_schema:
            conn = await connect(url, role="migrate")
            try:
                await migrate(conn, store._schema)
            finally:
                await conn.close()
        return store

    @property
    def schema(self) -> str:
        return self._schema

    @property
    def url(self) -> str:
        return self._url

    @property
    def pool(self) -> ConnectionPool:
        """The store's read connections, for adapters that share its schema."""
        return self._pool

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: ExpectedVersion,
    ) -> AppendResult:
        rules.validate_append(stream_id, events, expected_version)
        check_texts(stream_id, events)
        self._check_open()
        return await self._writer.append(stream_id, tuple(events), expected_version)

    async def append_streams(
        self,
        appends: Sequence[StreamAppend],
        *,
        idempotency: IdempotencyRecord | None = None,
    ) -> tuple[AppendResult, ...]:
        """Append to several streams in one transaction, all or none; the idempotency
        record's key goes into ``idempotency_keys`` in that transaction (``append.units``)."""
        rules.validate_streams(appends, idempotency)
        for append in appends:
            check_texts(append.stream_id, append.events)
        if idempotency is not None:
            check_text("the idempotency key", idempotency.key)
        self._check_open()
        return await self._writer.append_streams(tuple(appends), idempotency)

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        rules.check_read_stream(stream_id, from_version, limit)
        self._check_open()
        # A stream needs no horizon: appends to one stream commit in version order (the
        # unique (stream_id, stream_version) makes a competing append wait, then fail).
        events = await self._fetch(self._q_stream, (stream_id, from_version, limit))
        if events:
            self._writer.saw(stream_id, events[-1].stream_version)
        return events

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        rules.check_read_all(after, limit, types)
        self._check_open()
        horizon = await self._horizon.refresh(wait=self._visibility_wait)
        return (await self._page(after, horizon, limit, types))[0]

    def subscribe(
        self, *, after: int = 0, types: Collection[str] | None = None
    ) -> AsyncIterator[RecordedEvent]:
        rules.check_read_all(after, 1, types)
        self._check_open()
        return self._follow(after, None if types is None else list(types))

    async def list_streams(self, *, after: str | None = None, limit: int = 100) -> list[StreamInfo]:
        rules.check_page(after, limit)
        self._check_open()
        async with self._pool.connection() as conn:
            cur = await conn.execute(self._q_streams, ("" if after is None else after, limit))
            rows = await cur.fetchall()
        return [StreamInfo(stream_id=r[0], version=r[1], last_position=r[2]) for r in rows]

    async def stream_version(self, stream_id: str) -> int:
        rules.check_stream_id(stream_id)
        self._check_open()
        return int(await self._scalar(self._q_version, (stream_id,)))

    async def head_position(self) -> int:
        self._check_open()
        horizon = await self._horizon.refresh(wait=self._visibility_wait)
        return int(await self._scalar(self._q_head, (horizon,)))

    async def identity(self) -> str:
        self._check_open()
        if self._identity is None:
            self._identity = str(await self._scalar(self._q_identity, ()))
        return self._identity

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        if not isinstance(snapshot, Snapshot):
            raise TypeError(f"save_snapshot expects a Snapshot, got {type(snapshot).__name__}")
        rules.check_stream_id(snapshot.stream_id)
        self._check_open()
        async with self._pool.connection() as conn:
            await conn.execute(
                self._q_save_snapshot,
                (
                    snapshot.stream_id,
                    snapshot.aggregate_type,
                    snapshot.version,
                    snapshot.schema_version,
                    snapshot.state,
                ),
            )

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        rules.check_stream_id(stream_id)
        self._check_open()
        async with self._pool.connection() as conn:
            cur = await conn.execute(self._q_load_snapshot, (stream_id,), binary=True)
            row = await cur.fetchone()
        if row is None:
            return None
        return Snapshot(
            stream_id=row[0],
            aggregate_type=row[1],
            version=row[2],
            schema_version=row[3],
            state=bytes(row[4]),
        )

    # -- single-database mode -------------------------------------------------------------

    async def attach_inline(self, projection: InlineProjection) -> int:
        """Apply ``projection`` inside the transaction of every later append (its views are
        then never stale), after bringing its active copy up to date; return its checkpoint.

        The read store must be this schema (``PostgresReadStore`` on the same database)
        and the projection prepared there. Every process appending to the schema must
        apply it inline too: an append of a process that does not leaves its views behind.
        """
        self._check_open()

        def attach(conn: Any) -> int:
            # On the writer's thread: the very next batch applies it.
            checkpoint = projection.top_up(conn)
            self._writer.attach(projection)
            return checkpoint

        checkpoint = await self._writer.run(attach)
        self._inline[projection.name] = projection
        return checkpoint

    async def switch_inline(self, name: str, generation: int) -> int:
        """Make the rebuilt copy ``generation`` of inline projection ``name`` the active
        one, with no append in between in any process; return its checkpoint."""
        self._check_open()
        projection = self._inline.get(name)
        if projection is None:
            raise ConfigurationError(f"projection {name!r} is not applied inline by this store")
        return await self._writer.run(lambda conn: projection.switch(conn, generation))

    @property
    def inline_projections(self) -> frozenset[str]:
        return frozenset(self._inline)

    async def close(self) -> None:
        """Write the appends already queued, then close every connection."""
        if self._closed:
            return
        self._closed = True
        await self._writer.close()
        await self._listener.close()
        await self._pool.close()
        self._signal.fire()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError()

    def _committed(self, position: int) -> None:
        # Local subscribers wake at once; other processes learn from the writer's NOTIFY.
        self._signal.fire()

    async def _page(
        self, after: int, horizon: int, limit: int, types: Collection[str] | None
    ) -> tuple[list[RecordedEvent], int]:
        """Events after ``after`` up to ``horizon``, and how far the scan got: the last
        event's position on a full page, else the horizon (nothing before it is missing)."""
        if horizon <= after:
            return [], after
        if types is None:
            events = await self._fetch(self._q_all, (after, horizon, limit))
        else:
            events = await self._fetch(self._q_all_types, (after, horizon, list(types), limit))
        reached = events[-1].position if len(events) == limit else horizon
        return events, reached

    async def _follow(self, after: int, types: list[str] | None) -> AsyncIterator[RecordedEvent]:
        await self._listener.start()
        position = after
        backoff = 0.01
        while True:
            self._check_open()
            changed = self._signal.token()
            horizon = await self._horizon.refresh()
            events, reached = await self._page(position, horizon, _SUBSCRIBE_PAGE, types)
            for event in events:
                yield event
            position = max(position, reached)
            if len(events) == _SUBSCRIBE_PAGE:
                continue
            # Caught up. Writers in flight hold back the horizon: look again soon (a writer
            # that rolls back sends no notification), backing off if one stays open long.
            if self._horizon.settled:
                timeout, backoff = self._poll_interval, 0.01
            else:
                timeout, backoff = backoff, min(backoff * 2, self._poll_interval)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that comes as the signal fires, and the subscription would never end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await changed.wait()

    async def _fetch(self, query: sql.Composed, params: Sequence[Any]) -> list[RecordedEvent]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params, binary=True)
            return [recorded_event(row) for row in await cur.fetchall()]

    async def _scalar(self, query: sql.Composed, params: Sequence[Any]) -> Any:
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
        assert row is not None
        return row[0]


def _q(template: str, schema: sql.Identifier) -> sql.Composed:
    return sql.SQL(template.replace("{cols}", EVENT_COLUMNS)).format(s=schema)

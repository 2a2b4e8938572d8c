"""Single-database mode: a projection applied inside the append's own transaction.

When the read store is the event store's own PostgreSQL schema, the writer can apply a
projection's handlers to the events of each batch on its connection, in the batch's
transaction, before COMMIT (``append.batch``): the events, the views and the checkpoint commit
together, so a query never sees a view older than a committed append (DESIGN 4, seed 004).
A handler that raises rolls the append back (InlineProjectionError); nothing is parked.

The views go to the projection's *active* copy, read inside the transaction, and the
checkpoint only moves forward (``greatest``): appends of several processes commit in any
order, and each applies its own events.

Rebuilds stay blue/green: the runner fills a new copy beside the live one, and the switch
(``switch``) runs on the writer's connection in one transaction that first takes an
exclusive advisory lock per projection. Every inline batch takes the same lock *shared*
before it reads which copy is active, so the switch waits for the batches in flight, and
batches that come later wait for the switch, then write the new copy. Under the lock, the
switch applies to the new copy every committed event after its checkpoint (the runner's
last pages may have missed a few), then makes it active: no event is missed or applied
twice. ``attach`` does the same top-up into the active copy before the first inline batch.

Lock order, as in ``views_ops``: the inline lock, then the DDL lock (switch only), then
checkpoint rows, then the projection's row, then tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg

from twofold.adapters.postgres import views_ops as ops
from twofold.adapters.postgres._pool import connect
from twofold.adapters.postgres._rows import EVENT_COLUMNS, recorded_event
from twofold.adapters.postgres._urls import split_schema
from twofold.adapters.postgres.views_sql import ViewSchema
from twofold.adapters.postgres.views_tx import PostgresViewTransaction
from twofold.application.projections import (
    Handler,
    HandlerFailed,
    InlineProjectionError,
    make_apply,
)
from twofold.codec import Codec
from twofold.errors import ConfigurationError, GenerationChangedError
from twofold.records import RecordedEvent

__all__ = ["InlineProjection", "check_single_database"]

Connection = psycopg.Connection[Any]
_TOP_UP_PAGE = 500


class InlineProjection:
    """One projection, applied by the event store's writer (``PostgresEventStore.attach_inline``).

    ``handlers`` are the projection's bound handlers by stored type name
    (``Projection.bind``); ``views`` is the read store's ``ViewSchema``, which knows the
    projection's collections (``prepare`` registered them).
    """

    def __init__(
        self, name: str, *, handlers: Mapping[str, Handler], codec: Codec, views: ViewSchema
    ) -> None:
        self.name = name
        self._handlers = dict(handlers)
        self._codec = codec
        self._views = views
        s = f'"{views.schema}"'
        self._lock_key = f"twofold.inline:{views.schema}.{name}"
        self._q_generation = f"SELECT generation FROM {s}.projections WHERE name = %s"
        self._q_checkpoint = (
            f"SELECT position FROM {s}.checkpoints WHERE projection = %s AND generation = %s"
        )
        self._q_parked = (
            f"SELECT count(*) FROM {s}.dead_letters WHERE projection = %s AND generation = %s"
        )
        # The checkpoint and the freshness, in one statement; no row: the copy is gone.
        self._q_advance = (
            f"WITH c AS (UPDATE {s}.checkpoints SET position = greatest(position, %s)"
            " WHERE projection = %s AND generation = %s RETURNING 1)"
            f" UPDATE {s}.projections SET updated_at = now(),"
            " last_event_at = greatest(last_event_at, %s)"
            " WHERE name = %s AND EXISTS (SELECT FROM c)"
        )
        self._q_events = (
            f'SELECT {EVENT_COLUMNS} FROM "{views.schema}".events WHERE position > %s'
            " ORDER BY position LIMIT %s"
        )

    # -- in every batch -------------------------------------------------------------------

    def apply(self, conn: Connection, records: list[RecordedEvent]) -> None:
        """Inside the writer's transaction: the batch's events into the active copy."""
        conn.execute(
            "SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, 0))",
            (self._lock_key,),
            prepare=True,
        )
        # Read after the lock: a switch that held it has committed by now.
        generation = self._generation(conn)
        self._apply(conn, records, generation)

    def _apply(self, conn: Connection, records: list[RecordedEvent], generation: int) -> None:
        relevant = [record for record in records if record.type in self._handlers]
        if relevant:
            tx = PostgresViewTransaction(conn, self._views.tables_for(self.name, generation))
            try:
                make_apply(self._handlers, self._codec, relevant)(tx)
            except HandlerFailed as failed:
                raise InlineProjectionError(self.name, failed.record, failed.error) from None
            tx.flush()
        # Every batch moves the checkpoint, also one with nothing to apply: the lag the
        # health check reports is measured from it.
        self._advance(conn, generation, records[-1].position, records[-1].recorded_at)

    def _advance(
        self, conn: Connection, generation: int, position: int, at: datetime | None
    ) -> None:
        cur = conn.execute(
            self._q_advance, (position, self.name, generation, at, self.name), prepare=True
        )
        if cur.rowcount != 1:
            raise GenerationChangedError(self.name, generation)

    def _generation(self, conn: Connection) -> int:
        row = conn.execute(self._q_generation, (self.name,), prepare=True).fetchone()
        if row is None:
            raise ConfigurationError(
                f"projection {self.name!r} has no bookkeeping in schema "
                f"{self._views.schema!r}; prepare it (App.start) before applying it inline"
            )
        return int(row[0])

    # -- attaching and switching (each on the writer's thread, in a transaction of its own) --

    def top_up(self, conn: Connection) -> int:
        """Apply to the active copy every committed event after its checkpoint, under the
        exclusive lock; return the checkpoint. Refuses a copy with parked events: inline
        application would skip their streams' later events."""
        with conn.transaction():
            self._lock_exclusive(conn)
            generation = self._generation(conn)
            parked = conn.execute(self._q_parked, (self.name, generation)).fetchone()
            if parked is not None and parked[0]:
                raise ConfigurationError(
                    f"projection {self.name!r} has {parked[0]} parked events; retry its dead "
                    "letters or rebuild it before applying it inline"
                )
            return self._catch_up(conn, generation)

    def switch(self, conn: Connection, generation: int) -> int:
        """Make the rebuilt copy ``generation`` active, with no inline batch in between;
        return its checkpoint."""
        with conn.transaction():
            self._lock_exclusive(conn)
            checkpoint = self._catch_up(conn, generation)
            ops.switch(conn, self._views, self.name, generation)
        return checkpoint

    def _lock_exclusive(self, conn: Connection) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (self._lock_key,))

    def _catch_up(self, conn: Connection, generation: int) -> int:
        row = conn.execute(self._q_checkpoint, (self.name, generation)).fetchone()
        if row is None:
            raise GenerationChangedError(self.name, generation)
        checkpoint = int(row[0])
        while True:
            cur = conn.execute(self._q_events, (checkpoint, _TOP_UP_PAGE), binary=True)
            records = [recorded_event(r) for r in cur.fetchall()]
            if not records:
                return checkpoint
            self._apply(conn, records, generation)
            checkpoint = records[-1].position


async def check_single_database(event_store: str, read_store: str) -> None:
    """Raise ConfigurationError unless both URLs name one PostgreSQL database and schema.

    The database is recognised by the server's system identifier and the database name,
    whatever host name or address each URL uses to reach it.
    """
    how = (
        "projections applied inline (TWOFOLD_INLINE_PROJECTIONS) need the event store and "
        "the read store in one PostgreSQL database and schema: set TWOFOLD_EVENT_STORE and "
        "TWOFOLD_READ_STORE to the same postgresql://...?schema=... URL, or empty "
        "TWOFOLD_INLINE_PROJECTIONS"
    )
    try:
        (event_url, event_schema), (read_url, read_schema) = (
            split_schema(event_store),
            split_schema(read_store),
        )
    except ConfigurationError:
        raise ConfigurationError(
            f"{how} (now: {_safe(event_store)} and {_safe(read_store)})"
        ) from None
    if event_schema != read_schema:
        raise ConfigurationError(f"{how} (now: schemas {event_schema!r} and {read_schema!r})")
    identities = []
    for url in (event_url, read_url):
        conn = await connect(url, role="check")
        try:
            cur = await conn.execute(
                "SELECT current_database(), (SELECT system_identifier FROM pg_control_system())"
            )
            identities.append(await cur.fetchone())
        finally:
            await conn.close()
    if identities[0] != identities[1]:
        raise ConfigurationError(f"{how} (now: two databases, {identities[0]} and {identities[1]})")


def _safe(url: str) -> str:
    """A URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"

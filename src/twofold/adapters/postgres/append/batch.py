"""What the writer does with one batch of appends, on its own synchronous connection.

A batch is one transaction. A batch of one append (the common case) is one plain INSERT
(``_single``); a batch of several is one ``append_batch()`` call, which checks each append
on its own against its stream's version, so one stale append is reported on its own and
the others are written. Either way it is one statement and one round trip, in autocommit
mode; with inline projections attached, their view updates join that transaction
(``BEGIN``, the insert, each projection, ``COMMIT``), so events never commit without them.

Conflicts the batch cannot see beforehand (another process appending to the same stream, or
an event id stored already) surface as a unique violation, which rolls the whole batch
back: the appends whose ids are stored are settled (a retry gets its original result, other
content gets DuplicateEventError) and the rest are sent again; a stream conflict then shows
up as a version mismatch. Any other failure of a batch of several appends (an inline
projection's handler raising, say) is narrowed down by writing each append on its own, so
only the appends at fault fail.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from twofold.adapters import _append_rules as rules
from twofold.adapters.postgres._arrays import bytea_array, int_array, text_array, uuid_array
from twofold.adapters.postgres._pool import is_connection_error
from twofold.adapters.postgres._rows import EVENT_COLUMNS, recorded_event
from twofold.adapters.postgres.append.requests import InlineApplier, Request, Stale, Written
from twofold.adapters.postgres.append.sql import SingleAppend, expected_code
from twofold.errors import (
    ConcurrencyError,
    DuplicateEventError,
    EventStoreError,
)
from twofold.records import AppendResult, NewEvent, RecordedEvent

__all__ = [
    "Appender",
    "ThreadPathWriter",
    "append_params",
    "build_result",
    "lost",
]

_MAX_ATTEMPTS = 10
Connection = psycopg.Connection[Any]


class ThreadPathWriter:
    """What the thread path's two writers (``Appender`` here, ``units.UnitWriter``) share:
    the connection they write on (``connection()``; ``drop()`` discards it after a
    connection error) and the reads that settle a conflict or a retry."""

    def __init__(
        self,
        schema: sql.Identifier,
        *,
        connection: Callable[[], Connection],
        drop: Callable[[], None],
    ) -> None:
        self._connection = connection
        self._drop = drop
        self._by_ids = sql.SQL(
            "SELECT " + EVENT_COLUMNS + " FROM {}.events WHERE event_id = ANY(%s::uuid[])"
        ).format(schema)
        self._stream_from = sql.SQL(
            "SELECT " + EVENT_COLUMNS + " FROM {}.events WHERE stream_id = %s"
            " AND stream_version >= %s ORDER BY stream_version LIMIT %s"
        ).format(schema)

    def _stored_events(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, RecordedEvent]:
        """The events among ``ids`` that are stored already, by id."""
        cur = self._connection().execute(self._by_ids, (ids,), binary=True)
        return {row[0]: recorded_event(row) for row in cur.fetchall()}

    def _failure(self, exc: Exception) -> Exception:
        """What to tell the appends that ``exc`` failed: a lost connection is dropped, and
        the appends may or may not be stored (``lost``)."""
        if is_connection_error(exc):
            self._drop()
            return lost(exc)
        return exc


class Appender(ThreadPathWriter):
    """Writes batches of single appends on the thread path (see ``ThreadPathWriter``)."""

    def __init__(
        self,
        schema: sql.Identifier,
        *,
        connection: Callable[[], Connection],
        drop: Callable[[], None],
    ) -> None:
        super().__init__(schema, connection=connection, drop=drop)
        self.single = SingleAppend(schema)
        self._append = sql.SQL(
            "SELECT ok, actual, e_pos, recorded_at FROM {}.append_batch("
            "%s::text[], %s::bigint[], %s::integer[], %s::uuid[], %s::text[], %s::text[],"
            " %s::integer[], %s::bytea[], %s::bytea[])"
        ).format(schema)

    def write(self, batch: list[Request], inline: Mapping[str, InlineApplier]) -> int:
        """Write the batch and settle every request; return the last position committed."""
        # Every process writes its batch's streams in the same order, so two batches
        # waiting on each other's rows of the unique index cannot deadlock. The sort is
        # stable: appends to one stream keep their order.
        pending = sorted(batch, key=lambda request: request.stream_id)
        last = 0
        for _ in range(_MAX_ATTEMPTS):
            if not pending:
                return last
            try:
                conn = self._connection()
                outcomes = self._attempt(conn, pending, inline)
            except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
                pending = self._settle_stored(pending)
                continue
            except psycopg.errors.InvalidSqlStatementName:
                continue  # a prepared statement was dropped mid-transaction (_single)
            except Exception as exc:
                if is_connection_error(exc):
                    self._drop()
                    _fail(pending, lost(exc))
                elif len(pending) > 1:
                    # Find the appends at fault: the others go through on their own.
                    for request in pending:
                        last = max(last, self.write([request], inline))
                else:
                    _fail(pending, exc)
                return last
            if outcomes is None:  # the stream moved between two statements: look again
                continue
            stale: list[Stale] = []
            for outcome in outcomes:
                if isinstance(outcome, Written):
                    outcome.request.resolve(outcome.result)
                    last = max(last, outcome.result.position)
                else:
                    stale.append(outcome)
            self.settle_stale(stale)
            return last
        _fail(pending, EventStoreError(f"append gave up after {_MAX_ATTEMPTS} conflicts"))
        return last

    # -- one attempt ----------------------------------------------------------------------

    def _attempt(
        self, conn: Connection, pending: list[Request], inline: Mapping[str, InlineApplier]
    ) -> list[Written | Stale] | None:
        if not inline:
            return self._insert(conn, pending)  # one statement: its own transaction
        with conn.transaction():
            outcomes = self._insert(conn, pending)
            if outcomes:
                records = sorted(
                    (e for o in outcomes if isinstance(o, Written) for e in o.result.events),
                    key=lambda record: record.position,
                )
                if records:
                    for projection in inline.values():
                        projection.apply(conn, records)
            return outcomes

    def _insert(self, conn: Connection, pending: list[Request]) -> list[Written | Stale] | None:
        if len(pending) == 1:
            return self._insert_one(conn, pending[0])
        cur = conn.execute(self._append, append_params(pending), binary=True)
        row = cur.fetchone()
        assert row is not None
        ok, actual, e_pos, recorded_at = row
        outcomes: list[Written | Stale] = []
        offset = 0
        for request, written, version in zip(pending, ok, actual, strict=True):
            count = len(request.events)
            if written:
                positions = [_position(p) for p in e_pos[offset : offset + count]]
                rows = [
                    (position, version - count + 1 + index, recorded_at)
                    for index, position in enumerate(positions)
                ]
                outcomes.append(
                    Written(request, build_result(request.stream_id, request.events, rows))
                )
            else:
                outcomes.append(Stale(request, version))
            offset += count
        return outcomes

    def _insert_one(self, conn: Connection, request: Request) -> list[Written | Stale] | None:
        code = expected_code(request.expected)
        rows = self.single.append(conn, request.stream_id, request.events, code)
        if rows:
            return [Written(request, build_result(request.stream_id, request.events, rows))]
        actual = self.single.version(conn, request.stream_id)
        if code == -1 or (code == -2 and actual > 0) or code == actual:
            return None  # another writer moved the stream meanwhile to where we expected
        return [Stale(request, actual)]

    # -- conflicts ------------------------------------------------------------------------

    def settle_stale(self, stale: list[Stale]) -> None:
        """A version mismatch is either a retry of a stored append or a real conflict."""
        if not stale:
            return
        try:
            stored = self._stored([s.request for s in stale])
            for item in stale:
                request = item.request
                first = stored.get(request.events[0].event_id)
                if first is None:
                    label = rules.expected_label(request.expected)
                    request.fail(ConcurrencyError(request.stream_id, label, item.actual))
                    continue
                self._settle_retry(request, first)
        except Exception as exc:
            _fail([s.request for s in stale], self._failure(exc))

    def _settle_stored(self, pending: list[Request]) -> list[Request]:
        """Settle the appends whose event ids are stored; return the others to try again."""
        try:
            stored = self._stored(pending)
            remaining: list[Request] = []
            for request in pending:
                first = stored.get(request.events[0].event_id)
                if first is not None:
                    self._settle_retry(request, first)
                    continue
                taken = next(
                    (stored[e.event_id] for e in request.events if e.event_id in stored), None
                )
                if taken is not None:
                    where = f"version {taken.stream_version} of stream {taken.stream_id!r}"
                    request.fail(DuplicateEventError(str(taken.event_id), f"it is at {where}"))
                    continue
                remaining.append(request)
            return remaining
        except Exception as exc:
            _fail(pending, self._failure(exc))
            return []

    def _settle_retry(self, request: Request, first: RecordedEvent) -> None:
        cur = self._connection().execute(
            self._stream_from,
            (first.stream_id, first.stream_version, len(request.events)),
            binary=True,
        )
        following = [recorded_event(row) for row in cur.fetchall()]
        try:
            result = rules.match_retry(
                request.stream_id, request.events, request.expected, first, following
            )
        except EventStoreError as exc:
            request.fail(exc)
        else:
            request.resolve(result)

    def _stored(self, requests: list[Request]) -> dict[uuid.UUID, RecordedEvent]:
        return self._stored_events([e.event_id for request in requests for e in request.events])


def build_result(
    stream_id: str, events: Sequence[NewEvent], rows: Sequence[tuple[int, int, datetime]]
) -> AppendResult:
    """The result of an append of ``events`` to ``stream_id`` from the rows the insert
    returned (position, stream_version, recorded_at), in the events' order: one append's,
    or one stream's part of a unit (``units``)."""
    recorded = tuple(
        RecordedEvent(
            event_id=event.event_id,
            stream_id=stream_id,
            stream_version=version,
            position=position,
            type=event.type,
            schema_version=event.schema_version,
            data=event.data,
            metadata=event.metadata,
            recorded_at=recorded_at,
        )
        for event, (position, version, recorded_at) in zip(events, rows, strict=True)
    )
    last = recorded[-1]
    return AppendResult(
        stream_id=stream_id,
        version=last.stream_version,
        position=last.position,
        events=recorded,
    )


def append_params(pending: list[Request]) -> tuple[str, ...]:
    events = [(request.stream_id, event) for request in pending for event in request.events]
    return (
        text_array(request.stream_id for request in pending),
        int_array(expected_code(request.expected) for request in pending),
        int_array(len(request.events) for request in pending),
        uuid_array(event.event_id for _, event in events),
        text_array(stream_id for stream_id, _ in events),
        text_array(event.type for _, event in events),
        int_array(event.schema_version for _, event in events),
        bytea_array(event.data for _, event in events),
        bytea_array(event.metadata for _, event in events),
    )


def _position(value: int | None) -> int:
    assert value is not None, "append_batch() returned no position for a written event"
    return value


def _fail(requests: Sequence[Request], exc: BaseException) -> None:
    for request in requests:
        request.fail(exc)


def lost(exc: BaseException) -> EventStoreError:
    error = EventStoreError(
        "the connection to PostgreSQL failed during the append, so it may or may not be "
        f"stored ({exc}); retry the same append: a retry with the same event ids is safe"
    )
    error.__cause__ = exc
    return error

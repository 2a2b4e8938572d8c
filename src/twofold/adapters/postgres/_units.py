"""Appends to several streams as one unit (``append_streams``), on the writer's thread.

A unit is all or none. Its events go in with one statement that checks every stream's
expected version before it inserts a row: either every stream matches and all events are
written, or no row is. Its idempotency key, if any, is inserted right after, in the same
transaction, with the answer built from the positions the insert returned; so the key is
stored if and only if the events are (a crash in between loses both, and a retry runs
the command again).

Units waiting together share one transaction and one commit, like single appends. Within
it each unit stands alone: a stale one inserts nothing and the others go on. A unit whose
key turns out to be taken (another process ran the same command first) rolls the
transaction back; it is answered IdempotencyKeyTakenError and the others are written again.
A unit never takes the loop's lane (``_direct``): building the key's answer needs Python
between two statements of the transaction.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from twofold.adapters import _append_rules as rules
from twofold.adapters.postgres._arrays import bytea_array, int_array, text_array, uuid_array
from twofold.adapters.postgres._batch import InlineApplier, lost
from twofold.adapters.postgres._pool import is_connection_error
from twofold.adapters.postgres._rows import EVENT_COLUMNS, recorded_event
from twofold.adapters.postgres._single import expected_code
from twofold.application.records import (
    AppendResult,
    IdempotencyRecord,
    RecordedEvent,
    StreamAppend,
)
from twofold.errors import (
    ConcurrencyError,
    DuplicateEventError,
    EventStoreError,
    IdempotencyKeyTakenError,
)

__all__ = ["Unit", "UnitWriter"]

_MAX_ATTEMPTS = 10
Connection = psycopg.Connection[Any]

# The version check of every stream is one InitPlan, run once before any row: no row is
# inserted unless all streams match. Each row's version is its stream's current version
# (one index seek, from the statement's snapshot) plus its place in the stream's events.
# As in every append, the transaction has its xid before it takes a position (_horizon).
_INSERT = (
    "INSERT INTO {s}.events AS e (position, event_id, stream_id, stream_version, type,"
    " schema_version, data, metadata)"
    " SELECT nextval({seq}), u.id, u.stream,"
    " (SELECT coalesce(max(c.stream_version), 0) FROM {s}.events c"
    " WHERE c.stream_id = u.stream) + u.k, u.type, u.sv, u.data, u.meta"
    " FROM unnest(%s::uuid[], %s::text[], %s::integer[], %s::text[], %s::integer[],"
    " %s::bytea[], %s::bytea[]) AS u(id, stream, k, type, sv, data, meta)"
    " WHERE (SELECT bool_and(CASE WHEN w.want = -1 THEN true WHEN w.want = -2 THEN w.v > 0"
    " ELSE w.v = w.want END) FROM (SELECT a.want, (SELECT coalesce(max(c.stream_version), 0)"
    " FROM {s}.events c WHERE c.stream_id = a.stream) AS v"
    " FROM unnest(%s::text[], %s::bigint[]) AS a(stream, want)) AS w)"
    " AND pg_current_xact_id() IS NOT NULL"
    " RETURNING e.position, e.stream_id, e.stream_version, e.recorded_at"
)
# The first answer stored for a key wins, until it is older than keep_for.
_CLAIM = (
    "INSERT INTO {s}.idempotency_keys AS old (key, fingerprint, result) VALUES (%s, %s, %s)"
    " ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint,"
    " result = excluded.result, created_at = now() WHERE old.created_at < now() - %s"
    " RETURNING true"
)
_VERSIONS = (
    "SELECT stream_id, max(stream_version) FROM {s}.events"
    " WHERE stream_id = ANY(%s::text[]) GROUP BY stream_id"
)


@dataclass(slots=True)
class Unit:
    """One ``append_streams`` call waiting for the writer."""

    appends: tuple[StreamAppend, ...]
    idempotency: IdempotencyRecord | None
    future: asyncio.Future[tuple[AppendResult, ...]]
    # Set once on the writer's thread: (True, results) or (False, exception).
    outcome: tuple[bool, Any] | None = None

    @property
    def event_ids(self) -> set[uuid.UUID]:
        return {event.event_id for append in self.appends for event in append.events}

    @property
    def size(self) -> int:
        return sum(len(append.events) for append in self.appends)

    def resolve(self, results: tuple[AppendResult, ...]) -> None:
        if self.outcome is None:
            self.outcome = (True, results)

    def fail(self, exc: BaseException) -> None:
        if self.outcome is None:
            self.outcome = (False, exc)


class _Taken(Exception):
    """Rolls the transaction back: ``unit``'s key is stored already."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit


class UnitWriter:
    """Writes batches of units on the connection ``connection()`` returns."""

    def __init__(
        self,
        schema: sql.Identifier,
        *,
        connection: Callable[[], Connection],
        drop: Callable[[], None],
    ) -> None:
        self._connection = connection
        self._drop = drop
        seq = sql.Literal(schema.as_string(None) + ".event_position")
        self._insert = sql.SQL(_INSERT).format(s=schema, seq=seq)
        self._claim = sql.SQL(_CLAIM).format(s=schema)
        self._versions = sql.SQL(_VERSIONS).format(s=schema)
        self._by_ids = sql.SQL(
            "SELECT " + EVENT_COLUMNS + " FROM {}.events WHERE event_id = ANY(%s::uuid[])"
        ).format(schema)
        self._stream_from = sql.SQL(
            "SELECT " + EVENT_COLUMNS + " FROM {}.events WHERE stream_id = %s"
            " AND stream_version >= %s ORDER BY stream_version LIMIT %s"
        ).format(schema)

    def write(self, units: list[Unit], inline: Mapping[str, InlineApplier]) -> int:
        """Write the units and settle every one; return the last position committed."""
        pending = list(units)
        last = 0
        for _ in range(_MAX_ATTEMPTS):
            if not pending:
                return last
            try:
                written, stale = self._attempt(self._connection(), pending, inline)
            except _Taken as taken:
                taken.unit.fail(IdempotencyKeyTakenError(_key(taken.unit)))
                pending.remove(taken.unit)
                continue
            except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
                pending = self._settle_stored(pending)
                continue
            except Exception as exc:
                if is_connection_error(exc):
                    self._drop()
                    _fail(pending, lost(exc))
                elif len(pending) > 1:
                    # Find the units at fault: the others go through on their own.
                    for unit in pending:
                        last = max(last, self.write([unit], inline))
                else:
                    _fail(pending, exc)
                return last
            for unit, results in written:
                unit.resolve(results)
                last = max(last, results[-1].position)
            pending = self._settle_stale(stale)
        _fail(pending, EventStoreError(f"append gave up after {_MAX_ATTEMPTS} conflicts"))
        return last

    def _attempt(
        self, conn: Connection, pending: list[Unit], inline: Mapping[str, InlineApplier]
    ) -> tuple[list[tuple[Unit, tuple[AppendResult, ...]]], list[Unit]]:
        written: list[tuple[Unit, tuple[AppendResult, ...]]] = []
        stale: list[Unit] = []
        with conn.transaction():
            for unit in pending:
                results = self._insert_unit(conn, unit)
                if results is None:
                    stale.append(unit)
                    continue
                record = unit.idempotency
                if record is not None:
                    try:
                        answer = rules.check_answer(record.answer(results))
                    except Exception as exc:
                        raise EventStoreError(
                            f"the idempotency record's answer failed ({exc!r}); nothing "
                            "was appended"
                        ) from exc
                    claimed = conn.execute(
                        self._claim, (record.key, record.fingerprint, answer, record.keep_for)
                    ).fetchone()
                    if claimed is None:
                        raise _Taken(unit)
                written.append((unit, results))
            records = sorted(
                (event for _, results in written for result in results for event in result.events),
                key=lambda event: event.position,
            )
            if records:
                for projection in inline.values():
                    projection.apply(conn, records)
        return written, stale

    def _insert_unit(self, conn: Connection, unit: Unit) -> tuple[AppendResult, ...] | None:
        """The unit's results, or None when a stream was not at the version expected."""
        events = [(append.stream_id, k, event) for append in unit.appends
                  for k, event in enumerate(append.events, start=1)]  # fmt: skip
        params = (
            uuid_array(event.event_id for _, _, event in events),
            text_array(stream_id for stream_id, _, _ in events),
            int_array(k for _, k, _ in events),
            text_array(event.type for _, _, event in events),
            int_array(event.schema_version for _, _, event in events),
            bytea_array(event.data for _, _, event in events),
            bytea_array(event.metadata for _, _, event in events),
            text_array(append.stream_id for append in unit.appends),
            int_array(expected_code(append.expected_version) for append in unit.appends),
        )
        rows = conn.execute(self._insert, params, binary=True).fetchall()
        if not rows:
            return None
        by_stream: dict[str, list[tuple[int, int, datetime]]] = {}
        for position, stream_id, version, recorded_at in rows:
            by_stream.setdefault(stream_id, []).append((position, version, recorded_at))
        return tuple(
            _result(append, sorted(by_stream[append.stream_id], key=lambda row: row[1]))
            for append in unit.appends
        )

    # -- conflicts ------------------------------------------------------------------------

    def _settle_stale(self, stale: list[Unit]) -> list[Unit]:
        """Answer each stale unit: a retry of a stored one, or a real conflict. Return
        those to try again (their streams moved to the expected versions meanwhile)."""
        if not stale:
            return []
        try:
            stored = self._stored(stale)
            streams = [append.stream_id for unit in stale for append in unit.appends]
            cur = self._connection().execute(self._versions, (text_array(streams),))
            versions: dict[str, int] = dict(cur.fetchall())
            again: list[Unit] = []
            for unit in stale:
                if self._settle_retry(unit, stored):
                    continue
                for append in unit.appends:
                    actual = versions.get(append.stream_id, 0)
                    try:
                        rules.check_expected_version(
                            append.stream_id, append.expected_version, actual
                        )
                    except ConcurrencyError as exc:
                        unit.fail(exc)
                        break
                else:
                    again.append(unit)
            return again
        except Exception as exc:
            _fail(stale, self._failure(exc))
            return []

    def _settle_stored(self, pending: list[Unit]) -> list[Unit]:
        """Settle the units whose event ids are stored; return the others to try again."""
        try:
            stored = self._stored(pending)
            remaining: list[Unit] = []
            for unit in pending:
                if self._settle_retry(unit, stored):
                    continue
                taken = next((stored[i] for i in unit.event_ids if i in stored), None)
                if taken is not None:
                    where = f"version {taken.stream_version} of stream {taken.stream_id!r}"
                    unit.fail(DuplicateEventError(str(taken.event_id), f"it is at {where}"))
                    continue
                remaining.append(unit)
            return remaining
        except Exception as exc:
            _fail(pending, self._failure(exc))
            return []

    def _settle_retry(self, unit: Unit, stored: dict[uuid.UUID, RecordedEvent]) -> bool:
        """Answer ``unit`` as the original if every part's first event is stored."""
        firsts = [stored.get(append.events[0].event_id) for append in unit.appends]
        if not all(first is not None for first in firsts):
            return False
        conn = self._connection()
        results: list[AppendResult] = []
        try:
            for append, first in zip(unit.appends, firsts, strict=True):
                assert first is not None
                cur = conn.execute(
                    self._stream_from,
                    (first.stream_id, first.stream_version, len(append.events)),
                    binary=True,
                )
                following = [recorded_event(row) for row in cur.fetchall()]
                results.append(
                    rules.match_retry(
                        append.stream_id,
                        append.events,
                        append.expected_version,
                        first,
                        following,
                    )
                )
        except EventStoreError as exc:
            unit.fail(exc)
        else:
            unit.resolve(tuple(results))
        return True

    def _stored(self, units: list[Unit]) -> dict[uuid.UUID, RecordedEvent]:
        ids = [event_id for unit in units for event_id in unit.event_ids]
        cur = self._connection().execute(self._by_ids, (ids,), binary=True)
        return {row[0]: recorded_event(row) for row in cur.fetchall()}

    def _failure(self, exc: Exception) -> Exception:
        if is_connection_error(exc):
            self._drop()
            return lost(exc)
        return exc


def _result(append: StreamAppend, rows: Sequence[tuple[int, int, datetime]]) -> AppendResult:
    recorded = tuple(
        RecordedEvent(
            event_id=event.event_id,
            stream_id=append.stream_id,
            stream_version=version,
            position=position,
            type=event.type,
            schema_version=event.schema_version,
            data=event.data,
            metadata=event.metadata,
            recorded_at=recorded_at,
        )
        for event, (position, version, recorded_at) in zip(append.events, rows, strict=True)
    )
    last = recorded[-1]
    return AppendResult(
        stream_id=append.stream_id,
        version=last.stream_version,
        position=last.position,
        events=recorded,
    )


def _key(unit: Unit) -> str:
    assert unit.idempotency is not None
    return unit.idempotency.key


def _fail(units: Sequence[Unit], exc: BaseException) -> None:
    for unit in units:
        unit.fail(exc)

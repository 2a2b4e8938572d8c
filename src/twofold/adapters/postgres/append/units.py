"""Appends to several streams as one unit (``append_streams``), on the writer's thread.

A unit is all or none. Its events go in with one statement that checks every stream's
expected version before it inserts a row: either every stream matches and all events are
written, or no row is. Its idempotency key, if any, is inserted in the same transaction,
with the answer built from the positions the insert returned; so the key is stored if and
only if the events are (a crash in between loses both, and a retry runs the command again).

Units waiting together share one transaction and one commit, like single appends, in two
round trips (pipelined): BEGIN and every unit's insert; then the batch's keys and COMMIT.
Within it each unit stands alone: a stale one inserts nothing and the others go on. A key
that another process stored first fails the key insert (a unique violation), which rolls
the transaction back; that unit is answered IdempotencyKeyTakenError and the others are
written again. A unit never takes the loop's lane (``_direct``): building the key's answer
needs Python between two statements of the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import pq, sql

from twofold.adapters import _append_rules as rules
from twofold.adapters.postgres._arrays import bytea_array, int_array, text_array, uuid_array
from twofold.adapters.postgres._horizon import announcement
from twofold.adapters.postgres._pool import is_connection_error
from twofold.adapters.postgres._rows import recorded_event
from twofold.adapters.postgres.append.batch import ThreadPathWriter, build_result, lost
from twofold.adapters.postgres.append.requests import InlineApplier, Unit
from twofold.adapters.postgres.append.sql import expected_code
from twofold.errors import (
    ConcurrencyError,
    DuplicateEventError,
    EventStoreError,
    IdempotencyKeyTakenError,
)
from twofold.records import (
    AppendResult,
    IdempotencyRecord,
    RecordedEvent,
)

__all__ = ["UnitWriter"]

_MAX_ATTEMPTS = 10
Connection = psycopg.Connection[Any]

# The version check of every stream is one InitPlan, run once before any row: no row is
# inserted unless all streams match. Each row's version is its stream's current version
# (one index seek, from the statement's snapshot) plus its place in the stream's events.
# As in every append, the transaction announces itself (and so takes its xid) before it
# takes a position (_horizon.announcement).
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
    " AND {announce} IS NOT NULL"
    " RETURNING e.position, e.stream_id, e.stream_version, e.recorded_at"
)
# The first answer stored for a key wins, until it is older than keep_for: the expired ones
# are deleted, then the insert fails (a unique violation) if a key is still there. One
# statement each for all the keys of a batch.
_EXPIRE = (
    "DELETE FROM {s}.idempotency_keys AS k USING unnest(%s::text[], %s::interval[]) AS x(key,"
    " keep) WHERE k.key = x.key AND k.created_at < now() - x.keep"
)
_CLAIM = (
    "INSERT INTO {s}.idempotency_keys (key, fingerprint, result)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::bytea[])"
)
_KEY_CONSTRAINT = "idempotency_keys_pkey"
_KEY_AGES = "SELECT key, now() - created_at FROM {s}.idempotency_keys WHERE key = ANY(%s)"
_VERSIONS = (
    "SELECT stream_id, max(stream_version) FROM {s}.events"
    " WHERE stream_id = ANY(%s::text[]) GROUP BY stream_id"
)


class UnitWriter(ThreadPathWriter):
    """Writes batches of units on the thread path (see ``batch.ThreadPathWriter``)."""

    def __init__(
        self,
        schema: sql.Identifier,
        *,
        connection: Callable[[], Connection],
        drop: Callable[[], None],
    ) -> None:
        super().__init__(schema, connection=connection, drop=drop)
        seq = sql.Literal(schema.as_string(None) + ".event_position")
        self._insert = sql.SQL(_INSERT).format(s=schema, seq=seq, announce=announcement(schema))
        self._expire = sql.SQL(_EXPIRE).format(s=schema)
        self._claim = sql.SQL(_CLAIM).format(s=schema)
        self._key_ages = sql.SQL(_KEY_AGES).format(s=schema)
        self._versions = sql.SQL(_VERSIONS).format(s=schema)

    def write(self, units: list[Unit], inline: Mapping[str, InlineApplier]) -> int:
        """Write the units and settle every one; return the last position committed."""
        pending = list(units)
        last = 0
        for _ in range(_MAX_ATTEMPTS):
            if not pending:
                return last
            try:
                written, stale = self._attempt(self._connection(), pending, inline)
            except psycopg.errors.UniqueViolation as exc:
                if exc.diag.constraint_name == _KEY_CONSTRAINT:
                    pending = self._settle_taken(pending)
                else:
                    pending = self._settle_stored(pending)
                continue
            except psycopg.errors.DeadlockDetected:
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
        """One transaction in two round trips (pipelined): BEGIN and every unit's insert;
        then every key, and COMMIT. A taken key fails its insert, which rolls all back."""
        written: list[tuple[Unit, tuple[AppendResult, ...]]] = []
        stale: list[Unit] = []
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                inserts = [
                    conn.execute(self._insert, _params(unit), binary=True) for unit in pending
                ]
            for unit, cur in zip(pending, inserts, strict=True):
                results = _results(unit, cur.fetchall())
                if results is None:
                    stale.append(unit)
                else:
                    written.append((unit, results))
            records = sorted(
                (event for _, results in written for result in results for event in result.events),
                key=lambda event: event.position,
            )
            if records:
                for projection in inline.values():
                    projection.apply(conn, records)
            claims = [(unit.idempotency, _answer(unit.idempotency, results))
                      for unit, results in written if unit.idempotency is not None]  # fmt: skip
            with conn.pipeline():
                if claims:
                    keys = [record.key for record, _ in claims]
                    keep = [record.keep_for for record, _ in claims]
                    conn.execute(self._expire, (keys, keep))
                    fingerprints = [record.fingerprint for record, _ in claims]
                    conn.execute(self._claim, (keys, fingerprints, [a for _, a in claims]))
                conn.execute("COMMIT")
        except BaseException:
            if not conn.broken and conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            raise
        return written, stale

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

    def _settle_taken(self, pending: list[Unit]) -> list[Unit]:
        """Fail the units whose key another run stored first; return the others."""
        try:
            keys = [unit.idempotency.key for unit in pending if unit.idempotency is not None]
            cur = self._connection().execute(self._key_ages, (keys,))
            ages: dict[str, timedelta] = dict(cur.fetchall())
            remaining: list[Unit] = []
            for unit in pending:
                record = unit.idempotency
                if record is not None and ages.get(record.key, record.keep_for) < record.keep_for:
                    unit.fail(IdempotencyKeyTakenError(record.key))
                else:
                    remaining.append(unit)
            return remaining
        except Exception as exc:
            _fail(pending, self._failure(exc))
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
        return self._stored_events([event_id for unit in units for event_id in unit.event_ids])


def _params(unit: Unit) -> tuple[str, ...]:
    """The insert's parameters: the unit's events, then each stream's expected version."""
    events = [(append.stream_id, k, event) for append in unit.appends
              for k, event in enumerate(append.events, start=1)]  # fmt: skip
    return (
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


def _results(unit: Unit, rows: list[Any]) -> tuple[AppendResult, ...] | None:
    """The unit's results from the insert's rows; None when a stream was not at the version
    expected (no row was inserted)."""
    if not rows:
        return None
    by_stream: dict[str, list[tuple[int, int, datetime]]] = {}
    for position, stream_id, version, recorded_at in rows:
        by_stream.setdefault(stream_id, []).append((position, version, recorded_at))
    return tuple(
        build_result(
            append.stream_id,
            append.events,
            sorted(by_stream[append.stream_id], key=lambda row: row[1]),
        )
        for append in unit.appends
    )


def _answer(record: IdempotencyRecord, results: tuple[AppendResult, ...]) -> bytes:
    try:
        return rules.check_answer(record.answer(results))
    except Exception as exc:
        raise EventStoreError(
            f"the idempotency record's answer failed ({exc!r}); nothing was appended"
        ) from exc


def _fail(units: Sequence[Unit], exc: BaseException) -> None:
    for unit in units:
        unit.fail(exc)

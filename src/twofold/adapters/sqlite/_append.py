"""Appends inside the writer's group-commit transaction.

A batch is validated before anything is inserted: at its start, under the write lock, it
reads the current version of every stream it touches and which of its event ids are stored
already. An append that passes its checks against those facts (and the batch's own earlier
appends) is staged in memory; all staged rows go into the file in one INSERT before COMMIT.
So a failing append never touches the file, and the others in the batch go on.

An append whose event ids are stored already (a retry, or a duplicate) first flushes the
staged rows, then looks at the file itself; it inserts nothing.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from twofold.adapters import _append_rules as rules
from twofold.adapters.sqlite._queries import (
    COLUMNS,
    EPOCH,
    idempotency_get,
    idempotency_put,
    read_stream,
    to_event,
)
from twofold.errors import DuplicateEventError, EventStoreError, IdempotencyKeyTakenError
from twofold.records import (
    AppendResult,
    ExpectedVersion,
    IdempotencyRecord,
    NewEvent,
    RecordedEvent,
    StreamAppend,
)

__all__ = ["AppendOp", "AppendStreamsOp", "Batch"]

_WIDTH = 9  # columns per events row


@functools.lru_cache(maxsize=128)
def _insert_sql(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return f"INSERT INTO events ({COLUMNS}) VALUES {values}"


_HEAD, _VERSION, _STORED = 0, 1, 2


@functools.lru_cache(maxsize=128)
def _prefetch_sql(streams: int, ids: int) -> str:
    """Rows (kind, key, value): the head position, each stream's version, the stored ids."""
    parts = [f"SELECT {_HEAD}, NULL, coalesce(max(position), 0) FROM events"]
    prefix = ""
    if streams:
        prefix = f"WITH s(id) AS (VALUES {', '.join(['(?)'] * streams)}) "
        # One seek at the end of the (stream_id, stream_version) index per stream.
        parts.append(
            f"SELECT {_VERSION}, id, (SELECT stream_version FROM events "
            "WHERE stream_id = s.id ORDER BY stream_version DESC LIMIT 1) FROM s"
        )
    if ids:
        parts.append(
            f"SELECT {_STORED}, event_id, NULL FROM events "
            f"WHERE event_id IN ({', '.join('?' * ids)})"
        )
    return prefix + " UNION ALL ".join(parts)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _insert(conn: sqlite3.Connection, params: list[object]) -> None:
    """Insert flattened rows, as few statements as SQLite's variable limit allows."""
    per_statement = max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _WIDTH)
    for chunk in _chunks(params, per_statement * _WIDTH):
        conn.execute(_insert_sql(len(chunk) // _WIDTH), chunk)


class Batch:
    """What the writes of one transaction share; built after BEGIN IMMEDIATE.

    Invariant: ``_versions`` and ``_head`` equal the file's state plus the staged rows. They
    stay true until COMMIT because this connection holds SQLite's write lock, and no other
    connection (thread or process) can write meanwhile.
    """

    def __init__(
        self, conn: sqlite3.Connection, ops: Sequence[Callable[..., Any]], now_us: int
    ) -> None:
        self.now_us = now_us
        self.recorded_at = EPOCH + timedelta(microseconds=now_us)
        self.appended = False
        self._staged: list[object] = []
        self._staged_ids: set[bytes] = set()
        self._versions: dict[str, int] = {}
        self._stored_ids: set[bytes] = set()  # of this batch's ids, those already in the file
        self._head = 0
        appends: list[AppendOp] = []
        for op in ops:
            if isinstance(op, AppendOp):
                appends.append(op)
            elif isinstance(op, AppendStreamsOp):
                appends.extend(op.parts)
        if appends:
            self._prefetch(conn, appends)

    def _prefetch(self, conn: sqlite3.Connection, appends: list[AppendOp]) -> None:
        # One statement per chunk (one in practice): every statement is a GIL round trip,
        # and the event loop's work competes for the GIL with this thread.
        per_part = max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 2)
        streams = list(dict.fromkeys(op.stream_id for op in appends))
        ids = [event_id for op in appends for event_id in op.ids]
        for some_streams, some_ids in itertools.zip_longest(
            _chunks(streams, per_part), _chunks(ids, per_part), fillvalue=()
        ):
            rows = conn.execute(
                _prefetch_sql(len(some_streams), len(some_ids)), [*some_streams, *some_ids]
            )
            for kind, key, value in rows:
                if kind == _HEAD:
                    self._head = value
                elif kind == _VERSION:
                    self._versions[key] = value or 0
                else:
                    self._stored_ids.add(key)

    def seen(self, event_id: bytes) -> bool:
        return event_id in self._stored_ids or event_id in self._staged_ids

    def flush(self, conn: sqlite3.Connection) -> None:
        """Insert the staged rows. The checks passed, so a failure here fails the batch."""
        if self._staged:
            _insert(conn, self._staged)
            self._stored_ids |= self._staged_ids
            self._staged, self._staged_ids = [], set()

    def stage(self, op: AppendOp, version: int) -> AppendResult:
        """Record ``op`` at ``version`` + 1.. of its stream, to be inserted at flush."""
        start = self._head + 1
        now_us, recorded_at, stream_id = self.now_us, self.recorded_at, op.stream_id
        staged = self._staged
        recorded: list[RecordedEvent] = []
        for offset, event in enumerate(op.events):
            staged += (
                start + offset,
                op.ids[offset],
                stream_id,
                version + 1 + offset,
                event.type,
                event.schema_version,
                event.data,
                event.metadata,
                now_us,
            )
            recorded.append(
                RecordedEvent(
                    event_id=event.event_id,
                    stream_id=stream_id,
                    stream_version=version + 1 + offset,
                    position=start + offset,
                    type=event.type,
                    schema_version=event.schema_version,
                    data=event.data,
                    metadata=event.metadata,
                    recorded_at=recorded_at,
                )
            )
        self._staged_ids.update(op.ids)
        count = len(op.events)
        self._versions[stream_id] = version + count
        self._head += count
        self.appended = True
        return AppendResult(
            stream_id=stream_id,
            version=version + count,
            position=self._head,
            events=tuple(recorded),
        )

    def version(self, stream_id: str) -> int:
        return self._versions[stream_id]

    def mark(self) -> tuple[int, int, bool]:
        """Where staging stands, for ``unstage``."""
        return len(self._staged), self._head, self.appended

    def unstage(self, mark: tuple[int, int, bool], ops: Sequence[AppendOp]) -> None:
        """Forget what ``ops`` staged since ``mark`` (they were the last to stage)."""
        staged, self._head, self.appended = mark
        del self._staged[staged:]
        for op in ops:
            self._staged_ids.difference_update(op.ids)
            self._versions[op.stream_id] -= len(op.events)


class AppendOp:
    """One append, run by the writer inside its batch transaction."""

    __slots__ = ("events", "expected", "ids", "stream_id")

    def __init__(
        self, stream_id: str, events: Sequence[NewEvent], expected: ExpectedVersion
    ) -> None:
        self.stream_id = stream_id
        self.events = tuple(events)
        self.ids = [event.event_id.bytes for event in self.events]
        self.expected = expected

    def __call__(self, conn: sqlite3.Connection, batch: Batch) -> AppendResult:
        actual = batch.version(self.stream_id)
        if any(batch.seen(event_id) for event_id in self.ids):
            # An id is stored already: a retry of an earlier append, or a duplicate. The
            # file answers that, so it must first hold what this batch staged.
            batch.flush(conn)
            retried = self.retried(conn)
            if retried is not None:
                return retried
            # Same precedence as every backend: a stale version first, then the duplicate.
            rules.check_expected_version(self.stream_id, self.expected, actual)
            self.raise_duplicate(conn)
        rules.check_expected_version(self.stream_id, self.expected, actual)
        return batch.stage(self, actual)

    def retried(self, conn: sqlite3.Connection) -> AppendResult | None:
        """The original result if this append was stored before, else None."""
        row = conn.execute(
            f"SELECT {COLUMNS} FROM events WHERE event_id = ?", (self.ids[0],)
        ).fetchone()
        if row is None:
            return None
        first = to_event(row)
        stored = read_stream(conn, first.stream_id, first.stream_version, len(self.events))
        return rules.match_retry(self.stream_id, self.events, self.expected, first, stored)

    def raise_duplicate(self, conn: sqlite3.Connection) -> None:
        per_statement = max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        for chunk in _chunks(self.ids, per_statement):
            row = conn.execute(
                "SELECT event_id, stream_id, stream_version FROM events "
                f"WHERE event_id IN ({', '.join('?' * len(chunk))}) LIMIT 1",
                chunk,
            ).fetchone()
            if row is not None:
                raise DuplicateEventError(
                    str(self.events[self.ids.index(row[0])].event_id),
                    f"it is at version {row[2]} of stream {row[1]!r}",
                )
        raise AssertionError("an event id was seen in this batch but is not in the file")


class AppendStreamsOp:
    """Appends to several streams, and an idempotency key, as one job: all or none.

    Every check runs before anything is staged; the key's row is written in the batch's
    transaction, so it commits with the events or not at all.
    """

    __slots__ = ("idempotency", "parts")

    def __init__(
        self, appends: Sequence[StreamAppend], idempotency: IdempotencyRecord | None
    ) -> None:
        self.parts = [
            AppendOp(append.stream_id, append.events, append.expected_version) for append in appends
        ]
        self.idempotency = idempotency

    def __call__(self, conn: sqlite3.Connection, batch: Batch) -> tuple[AppendResult, ...]:
        parts = self.parts
        if any(batch.seen(event_id) for part in parts for event_id in part.ids):
            batch.flush(conn)
            retried = [part.retried(conn) for part in parts]
            if all(result is not None for result in retried):
                return tuple(result for result in retried if result is not None)
            for part in parts:
                rules.check_expected_version(
                    part.stream_id, part.expected, batch.version(part.stream_id)
                )
            for part in parts:
                if any(batch.seen(event_id) for event_id in part.ids):
                    part.raise_duplicate(conn)
        for part in parts:
            rules.check_expected_version(
                part.stream_id, part.expected, batch.version(part.stream_id)
            )
        record = self.idempotency
        if record is None:
            return tuple(batch.stage(part, batch.version(part.stream_id)) for part in parts)
        keep_us = record.keep_for // timedelta(microseconds=1)
        if idempotency_get(conn, record.key, batch.now_us - keep_us) is not None:
            raise IdempotencyKeyTakenError(record.key)
        mark = batch.mark()
        results = tuple(batch.stage(part, batch.version(part.stream_id)) for part in parts)
        try:
            answer = rules.check_answer(record.answer(results))
        except Exception as exc:
            batch.unstage(mark, parts)
            raise EventStoreError(
                f"the idempotency record's answer failed ({exc!r}); nothing was appended"
            ) from exc
        idempotency_put(conn, batch, record.key, record.fingerprint, answer, keep_us, False)
        return results

"""The SQL of the SQLite event store's reads, snapshots and idempotency keys.

Each function runs on a worker thread's connection; the writes among them run inside the
writer's batch transaction and are single statements (appends are in ``_append``).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from twofold.adapters._idempotency import PRUNE_BATCH
from twofold.records import RecordedEvent, Snapshot, StreamInfo

if TYPE_CHECKING:
    from twofold.adapters.sqlite._append import Batch

__all__ = [
    "COLUMNS",
    "EPOCH",
    "head_position",
    "idempotency_get",
    "idempotency_put",
    "load_snapshot",
    "read_page",
    "read_stream",
    "read_stream_data",
    "save_snapshot",
    "stream_version",
    "to_event",
    "to_events",
]

COLUMNS = (
    "position, event_id, stream_id, stream_version, type, schema_version, data, metadata, "
    "recorded_at"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_uuid = msgspec.convert  # 16 bytes -> uuid.UUID


def to_event(row: Sequence[Any]) -> RecordedEvent:
    return to_events((row,))[0]


def to_events(rows: Iterable[Sequence[Any]]) -> list[RecordedEvent]:
    """Rows of ``COLUMNS`` as records.

    The hot path of every replay (a page of the log is read per batch): ids are made by
    msgspec's UUID conversion (in C), and a time is made once for a run of rows that share
    it, as the events of one group commit do.
    """
    events = []
    last_us: int | None = None
    moment = EPOCH
    for position, event_id, stream_id, version, kind, schema, data, metadata, us in rows:
        if us != last_us:
            moment = EPOCH + timedelta(microseconds=us)
            last_us = us
        events.append(
            RecordedEvent(
                position=position,
                event_id=_uuid(event_id, uuid.UUID),
                stream_id=stream_id,
                stream_version=version,
                type=kind,
                schema_version=schema,
                data=data,
                metadata=metadata,
                recorded_at=moment,
            )
        )
    return events


def list_streams(conn: sqlite3.Connection, after: str | None, limit: int) -> list[StreamInfo]:
    # The (stream_id, stream_version) index, in its (byte) order, from ``after`` on.
    rows = conn.execute(
        "SELECT stream_id, max(stream_version), max(position) FROM events "
        "WHERE stream_id > ? GROUP BY stream_id ORDER BY stream_id LIMIT ?",
        ("" if after is None else after, limit),
    ).fetchall()
    return [StreamInfo(stream_id=r[0], version=r[1], last_position=r[2]) for r in rows]


def stream_version(conn: sqlite3.Connection, stream_id: str) -> int:
    # One seek at the end of the (stream_id, stream_version) index.
    row = conn.execute(
        "SELECT stream_version FROM events WHERE stream_id = ? "
        "ORDER BY stream_version DESC LIMIT 1",
        (stream_id,),
    ).fetchone()
    return 0 if row is None else int(row[0])


def read_stream(
    conn: sqlite3.Connection, stream_id: str, from_version: int, limit: int | None
) -> list[RecordedEvent]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM events WHERE stream_id = ? AND stream_version >= ? "
        "ORDER BY stream_version LIMIT ?",
        (stream_id, from_version, -1 if limit is None else limit),
    ).fetchall()
    return to_events(rows)


def read_stream_data(
    conn: sqlite3.Connection, stream_id: str, from_version: int
) -> list[tuple[int, str, int, bytes]]:
    """(stream_version, type, schema_version, data) of a stream's events: the rows as they
    come, for loading aggregates (no ids, metadata or times to convert)."""
    return conn.execute(
        "SELECT stream_version, type, schema_version, data FROM events "
        "WHERE stream_id = ? AND stream_version >= ? ORDER BY stream_version",
        (stream_id, from_version),
    ).fetchall()


def read_page(
    conn: sqlite3.Connection, after: int, limit: int, types: frozenset[str] | None
) -> tuple[list[RecordedEvent], int]:
    """Up to ``limit`` events after ``after``, and the position up to which the log was scanned.

    Positions commit in order, so once the scan reached p, no event at or below p can appear
    later: a subscriber may go on from p even when the type filter matched nothing.
    """
    if types is None:
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        ).fetchall()
        return to_events(rows), (rows[-1][0] if rows else after)
    names = sorted(types)
    # One read transaction: the head read below belongs to the same snapshot as the rows.
    conn.execute("BEGIN")
    try:
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM events WHERE position > ? "
            f"AND type IN ({', '.join('?' * len(names))}) ORDER BY position LIMIT ?",
            (after, *names, limit),
        ).fetchall()
        reached = rows[-1][0] if len(rows) == limit else max(after, head_position(conn))
    finally:
        conn.execute("COMMIT")
    return to_events(rows), reached


def head_position(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0])


def identity(conn: sqlite3.Connection) -> str:
    return str(conn.execute("SELECT identity FROM store_identity").fetchone()[0])


def save_snapshot(conn: sqlite3.Connection, batch: Batch, snapshot: Snapshot) -> None:
    # A snapshot never moves backwards; one at the same version replaces the stored one, so
    # a snapshot of a new schema version takes over.
    conn.execute(
        "INSERT INTO snapshots (stream_id, aggregate_type, version, schema_version, state) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (stream_id) DO UPDATE SET "
        "aggregate_type = excluded.aggregate_type, version = excluded.version, "
        "schema_version = excluded.schema_version, state = excluded.state "
        "WHERE excluded.version >= snapshots.version",
        (
            snapshot.stream_id,
            snapshot.aggregate_type,
            snapshot.version,
            snapshot.schema_version,
            snapshot.state,
        ),
    )


def load_snapshot(conn: sqlite3.Connection, stream_id: str) -> Snapshot | None:
    row = conn.execute(
        "SELECT aggregate_type, version, schema_version, state FROM snapshots WHERE stream_id = ?",
        (stream_id,),
    ).fetchone()
    if row is None:
        return None
    return Snapshot(
        stream_id=stream_id,
        aggregate_type=row[0],
        version=row[1],
        schema_version=row[2],
        state=row[3],
    )


def idempotency_put(
    conn: sqlite3.Connection,
    batch: Batch,
    key: str,
    fingerprint: str,
    result: bytes,
    keep_us: int,
    prune: bool,
) -> tuple[str, bytes]:
    # The first answer stored for a key wins; later puts return it unchanged, until it is
    # older than keep_us: then this answer takes its place.
    cutoff = batch.now_us - keep_us
    conn.execute(
        "INSERT INTO idempotency (key, fingerprint, result, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, "
        "result = excluded.result, created_at = excluded.created_at "
        "WHERE idempotency.created_at < ?",
        (key, fingerprint, result, batch.now_us, cutoff),
    )
    if prune:
        idempotency_prune(conn, cutoff)
    stored = idempotency_get(conn, key, cutoff)
    assert stored is not None
    return stored


def idempotency_get(conn: sqlite3.Connection, key: str, cutoff: int) -> tuple[str, bytes] | None:
    """The answer stored for ``key`` at ``cutoff`` (microseconds since 1970) or later."""
    row = conn.execute(
        "SELECT fingerprint, result FROM idempotency WHERE key = ? AND created_at >= ?",
        (key, cutoff),
    ).fetchone()
    return None if row is None else (str(row[0]), bytes(row[1]))


def idempotency_prune(conn: sqlite3.Connection, cutoff: int) -> int:
    """Delete up to PRUNE_BATCH of the keys stored before ``cutoff``; how many."""
    return conn.execute(
        "DELETE FROM idempotency WHERE key IN (SELECT key FROM idempotency "
        "WHERE created_at < ? ORDER BY created_at LIMIT ?)",
        (cutoff, PRUNE_BATCH),
    ).rowcount

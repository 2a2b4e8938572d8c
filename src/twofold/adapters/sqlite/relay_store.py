"""The relay's checkpoints and parked messages in a SQLite file (the event store's, or its own).

Tables ``relay_checkpoints`` and ``relay_parked``, created when missing. Writes are few (a
checkpoint a fraction of a second, a parked message now and then), so one connection on a
worker thread serves them; WAL with synchronous=FULL, like the event store.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from twofold.application.relay.store import ParkedMessage, RelayCheckpoint
from twofold.errors import StoreClosedError

__all__ = ["SQLiteRelayStore"]

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS relay_checkpoints (
        destination TEXT PRIMARY KEY,
        position INTEGER NOT NULL,
        sequence INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS relay_parked (
        destination TEXT NOT NULL,
        position INTEGER NOT NULL,
        stream_id TEXT NOT NULL,
        sequence INTEGER,
        error TEXT NOT NULL,
        parked_at INTEGER NOT NULL,
        PRIMARY KEY (destination, position)
    )
    """,
)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


class SQLiteRelayStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> SQLiteRelayStore:
        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                conn.close()
                raise
            return conn

        return cls(await asyncio.to_thread(connect))

    async def _run(self, job: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        def locked() -> T:
            with self._lock:
                conn = self._conn
                if conn is None:
                    raise StoreClosedError("relay store")
                if not write:
                    return job(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = job(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result

        return await asyncio.to_thread(locked)

    async def prepare(self, destination: str) -> RelayCheckpoint:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO relay_checkpoints VALUES (?, 0, 0) ON CONFLICT DO NOTHING",
                (destination,),
            )

        await self._run(job, write=True)
        return await self.checkpoint(destination)

    async def checkpoint(self, destination: str) -> RelayCheckpoint:
        def job(conn: sqlite3.Connection) -> RelayCheckpoint:
            row = conn.execute(
                "SELECT position, sequence FROM relay_checkpoints WHERE destination = ?",
                (destination,),
            ).fetchone()
            return RelayCheckpoint(destination, *row) if row else RelayCheckpoint(destination)

        return await self._run(job)

    async def advance(self, destination: str, *, position: int, sequence: int) -> None:
        def job(conn: sqlite3.Connection) -> None:
            _advance(conn, destination, position, sequence)

        await self._run(job, write=True)

    async def park(self, messages: Sequence[ParkedMessage]) -> None:
        rows = [
            (m.destination, m.position, m.stream_id, m.sequence, m.error, _micros(m.parked_at))
            for m in messages
        ]

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO relay_parked VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows
            )

        await self._run(job, write=True)

    async def parked(self, destination: str, stream_id: str | None = None) -> list[ParkedMessage]:
        def job(conn: sqlite3.Connection) -> list[ParkedMessage]:
            sql = (
                "SELECT position, stream_id, sequence, error, parked_at FROM relay_parked "
                "WHERE destination = ?"
            )
            args: tuple[str, ...] = (destination,)
            if stream_id is not None:
                sql += " AND stream_id = ?"
                args += (stream_id,)
            rows = conn.execute(sql + " ORDER BY position", args).fetchall()
            return [
                ParkedMessage(
                    destination=destination,
                    position=position,
                    stream_id=stream,
                    sequence=sequence,
                    error=error,
                    parked_at=_EPOCH + timedelta(microseconds=parked_at),
                )
                for position, stream, sequence, error, parked_at in rows
            ]

        return await self._run(job)

    async def release(
        self, destination: str, positions: Sequence[int], *, sequence: int | None = None
    ) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "DELETE FROM relay_parked WHERE destination = ? AND position = ?",
                [(destination, p) for p in positions],
            )
            if sequence is not None:
                _advance(conn, destination, 0, sequence)

        await self._run(job, write=True)

    async def close(self) -> None:
        def job() -> None:
            with self._lock:
                conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

        await asyncio.to_thread(job)


def _advance(conn: sqlite3.Connection, destination: str, position: int, sequence: int) -> None:
    conn.execute(
        "INSERT INTO relay_checkpoints VALUES (?, ?, ?) ON CONFLICT (destination) DO UPDATE "
        "SET position = max(position, excluded.position), "
        "sequence = max(sequence, excluded.sequence)",
        (destination, position, sequence),
    )

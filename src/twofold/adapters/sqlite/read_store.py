"""The SQLite read store: views as JSON documents, one table per collection and generation.

Layout: collection ``orders`` of generation 3 lives in table ``v_orders_g3``; the SQL view
``v_orders`` names the active generation, so readers never need to know which one it is,
and a rebuild switches by replacing that view inside one transaction (blue/green).

Writes (projection batches) run on one thread of their own; a batch's documents are
buffered and flushed with ``executemany`` just before its checkpoint, in the same
transaction. Point reads and index scans of the views run inline on the caller's thread by
default: they are served from SQLite's page cache in microseconds, less than the hop to a
thread would cost (measured in bench/), and WAL readers never wait for the writer.

Durability: ``synchronous=NORMAL``. Views are derived data; after a power loss the views
and their checkpoint are still consistent with each other (WAL), at worst a little older,
and the runner replays the rest from the event store.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from twofold.adapters.sqlite.views_sql import (
    ViewSchema,
    collection_table,
    create_collection_sql,
    from_us,
    to_us,
)
from twofold.adapters.sqlite.views_tx import SQLiteViewTransaction, encode_record
from twofold.application.views import (
    ApplyBatch,
    Collection,
    DeadLetter,
    Document,
    ProjectionState,
    ProjectionStatus,
    SortBy,
    ViewCopy,
)
from twofold.codec import decode_json
from twofold.errors import GenerationChangedError, StoreClosedError, UnknownProjectionError
from twofold.records import RecordedEvent

__all__ = ["SQLiteReadStore"]

T = TypeVar("T")

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS twofold_projections (
    name TEXT PRIMARY KEY,
    generation INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    updated_at INTEGER,
    last_event_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS twofold_checkpoints (
    projection TEXT NOT NULL,
    generation INTEGER NOT NULL,
    position INTEGER NOT NULL,
    event_store TEXT,
    PRIMARY KEY (projection, generation)
);
CREATE TABLE IF NOT EXISTS twofold_dead_letters (
    projection TEXT NOT NULL,
    generation INTEGER NOT NULL,
    position INTEGER NOT NULL,
    stream_id TEXT NOT NULL,
    error TEXT NOT NULL,
    parked_at INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (projection, generation, position)
);
"""
# Columns added since the tables were first made: (table, column, definition). A file made
# before gets them when opened (``_add_columns``).
_ADDED_COLUMNS = (
    ("twofold_projections", "attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("twofold_checkpoints", "event_store", "TEXT"),
    ("twofold_projections", "paused", "INTEGER NOT NULL DEFAULT 0"),
    ("twofold_projections", "revision", "INTEGER NOT NULL DEFAULT 0"),
)


class SQLiteReadStore:
    """Views, checkpoints and dead letters in one SQLite file."""

    def __init__(self, path: str | Path, *, inline_reads: bool = True) -> None:
        self.path = str(path)
        self.inline_reads = inline_reads
        self.schema = ViewSchema()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="twofold-views")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._closed = False

    # -- connections ----------------------------------------------------------------------

    @classmethod
    async def open(cls, path: str | Path, *, inline_reads: bool = True) -> SQLiteReadStore:
        store = cls(path, inline_reads=inline_reads)
        await store._run(store._open_writer)
        store._reader = store._connect()
        return store

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA foreign_keys = OFF")
        return conn

    def _open_writer(self) -> None:
        conn = self._connect()
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        # Builds of SQLite that scrub freed pages by default (Debian's, among others) would
        # write every page of an old copy again to drop it after a rebuild. The views hold
        # nothing the event log does not, so only what is rewritten anyway is scrubbed.
        conn.execute("PRAGMA secure_delete = FAST")
        conn.executescript(_BOOKKEEPING)
        self._add_columns(conn)
        self._writer = conn

    @staticmethod
    def _add_columns(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # another process may be adding them too
        try:
            for table, column, definition in _ADDED_COLUMNS:
                have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._closed:
            raise StoreClosedError("read store")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args))

    def _w(self) -> sqlite3.Connection:
        assert self._writer is not None, "open the store with SQLiteReadStore.open()"
        return self._writer

    async def close(self) -> None:
        if self._closed:
            return
        await self._run(self._close_writer)
        self._closed = True
        self._executor.shutdown(wait=True)
        if self._reader is not None:
            self._reader.close()

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def rejects(self, error: BaseException) -> bool:
        # Text or a blob over SQLite's limits; an int index value beyond 64 bits; a document
        # that is not JSON.
        return isinstance(error, sqlite3.DataError | OverflowError | msgspec.EncodeError)

    # -- bookkeeping ----------------------------------------------------------------------

    async def prepare(self, projection: str, collections: Sequence[Collection]) -> ProjectionState:
        self.schema.register(projection, collections)
        await self._run(self._prepare, projection, collections)
        return await self.state(projection)

    def _prepare(self, projection: str, collections: Sequence[Collection]) -> None:
        conn = self._w()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT generation FROM twofold_projections WHERE name = ?", (projection,)
            ).fetchone()
            if row is None:
                generation = 1
                conn.execute(
                    "INSERT INTO twofold_projections (name, generation, status, updated_at) "
                    "VALUES (?, 1, ?, ?)",
                    (projection, ProjectionStatus.RUNNING.value, to_us(None)),
                )
                conn.execute(
                    "INSERT INTO twofold_checkpoints (projection, generation, position) "
                    "VALUES (?, 1, 0)",
                    (projection,),
                )
            else:
                generation = row[0]
            for collection in collections:
                self._create_collection(conn, collection, generation, active=True)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _create_collection(
        conn: sqlite3.Connection, collection: Collection, generation: int, *, active: bool
    ) -> None:
        for statement in create_collection_sql(collection, generation):
            conn.execute(statement)
        if active:
            name = collection_table(collection.name, None)
            conn.execute(f"DROP VIEW IF EXISTS {name}")
            table = collection_table(collection.name, generation)
            conn.execute(f"CREATE VIEW {name} AS SELECT * FROM {table}")

    async def state(self, projection: str) -> ProjectionState:
        states = await self._run(self._states, projection)
        if not states:
            raise UnknownProjectionError(projection, self.schema.projections())
        return states[0]  # type: ignore[no-any-return]

    async def states(self) -> list[ProjectionState]:
        return await self._run(self._states, None)  # type: ignore[no-any-return]

    def _states(self, projection: str | None) -> list[ProjectionState]:
        sql = (
            "SELECT p.name, p.generation, COALESCE(c.position, 0), p.status, p.error, "
            "p.updated_at, p.last_event_at, p.attempts, c.event_store, "
            "(SELECT count(*) FROM twofold_dead_letters d WHERE d.projection = p.name "
            "AND d.generation = p.generation), p.paused, p.revision FROM twofold_projections p "
            "LEFT JOIN twofold_checkpoints c ON c.projection = p.name "
            "AND c.generation = p.generation"
        )
        args: tuple[Any, ...] = ()
        if projection is not None:
            sql += " WHERE p.name = ?"
            args = (projection,)
        rows = self._w().execute(sql + " ORDER BY p.name", args).fetchall()
        return [
            ProjectionState(
                name=r[0],
                generation=r[1],
                checkpoint=r[2],
                status=ProjectionStatus(r[3]),
                error=r[4],
                updated_at=from_us(r[5]),
                last_event_at=from_us(r[6]),
                attempts=r[7],
                event_store=r[8],
                parked=r[9],
                paused=bool(r[10]),
                revision=r[11],
            )
            for r in rows
        ]

    async def set_paused(self, projection: str, paused: bool) -> None:
        changed = await self._run(self._set_paused, projection, paused)
        if not changed:
            raise UnknownProjectionError(projection, self.schema.projections())

    def _set_paused(self, projection: str, paused: bool) -> bool:
        cursor = self._w().execute(
            "UPDATE twofold_projections SET paused = ?, revision = revision + 1, "
            "updated_at = ? WHERE name = ?",
            (int(paused), to_us(None), projection),
        )
        return cursor.rowcount == 1

    async def read_copy(self, projection: str, generation: int | None = None) -> ViewCopy:
        if self._closed:
            raise StoreClosedError("read store")
        # On a connection and thread of its own: a long read holds no batch up (WAL).
        return await asyncio.to_thread(self._read_copy, projection, generation)

    def _read_copy(self, projection: str, generation: int | None) -> ViewCopy:
        conn = self._connect()
        try:
            return self._read_snapshot(conn, projection, generation)
        finally:
            conn.close()

    def _read_snapshot(
        self, conn: sqlite3.Connection, projection: str, generation: int | None
    ) -> ViewCopy:
        conn.execute("BEGIN")  # one read transaction: a snapshot of the file (WAL)
        try:
            if generation is None:
                row = conn.execute(
                    "SELECT generation FROM twofold_projections WHERE name = ?", (projection,)
                ).fetchone()
                if row is None:
                    raise UnknownProjectionError(projection, self.schema.projections())
                generation = int(row[0])
            row = conn.execute(
                "SELECT position FROM twofold_checkpoints WHERE projection = ? AND generation = ?",
                (projection, generation),
            ).fetchone()
            if row is None:
                raise GenerationChangedError(projection, generation)
            checkpoint = int(row[0])
            documents: dict[str, dict[str, Document]] = {}
            for collection in self.schema.collections(projection):
                table = collection_table(collection.name, generation)
                documents[collection.name] = {
                    key: decode_json(doc)
                    for key, doc in conn.execute(f"SELECT key, doc FROM {table}")
                }
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return ViewCopy(projection, generation, checkpoint, documents)

    async def drop_copy(self, projection: str, generation: int) -> None:
        await self._run(self._drop_copy, projection, generation)

    def _drop_copy(self, projection: str, generation: int) -> None:
        conn = self._w()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT 1 FROM twofold_projections WHERE name = ? AND generation = ?",
                (projection, generation),
            ).fetchone()
            if row is None:  # never the active copy
                for collection in self.schema.collections(projection):
                    conn.execute(
                        f"DROP TABLE IF EXISTS {collection_table(collection.name, generation)}"
                    )
                for table in ("twofold_checkpoints", "twofold_dead_letters"):
                    conn.execute(
                        f"DELETE FROM {table} WHERE projection = ? AND generation = ?",
                        (projection, generation),
                    )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def set_status(
        self,
        projection: str,
        status: ProjectionStatus,
        error: str | None = None,
        *,
        attempts: int = 0,
    ) -> None:
        await self._run(self._set_status, projection, status, error, attempts)

    def _set_status(
        self, projection: str, status: ProjectionStatus, error: str | None, attempts: int
    ) -> None:
        self._w().execute(
            "UPDATE twofold_projections SET status = ?, error = ?, attempts = ?, updated_at = ? "
            "WHERE name = ?",
            (status.value, error, attempts, to_us(None), projection),
        )

    async def bind_event_store(self, projection: str, generation: int, identity: str) -> str:
        recorded: str = await self._run(self._bind, projection, generation, identity)
        return recorded

    def _bind(self, projection: str, generation: int, identity: str) -> str:
        conn = self._w()
        conn.execute("BEGIN IMMEDIATE")
        try:
            # A copy that holds nothing yet (checkpoint 0) may change hands.
            conn.execute(
                "UPDATE twofold_checkpoints SET event_store = ? WHERE projection = ? "
                "AND generation = ? AND (event_store IS NULL OR position = 0) "
                "AND event_store IS NOT ?",
                (identity, projection, generation, identity),
            )
            row = conn.execute(
                "SELECT event_store FROM twofold_checkpoints WHERE projection = ? "
                "AND generation = ?",
                (projection, generation),
            ).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if row is None:
            raise GenerationChangedError(projection, generation)
        return str(row[0])

    async def checkpoint(self, projection: str, generation: int) -> int:
        row = await self._run(self._checkpoint, projection, generation)
        return int(row)

    def _checkpoint(self, projection: str, generation: int) -> int:
        row = (
            self._w()
            .execute(
                "SELECT position FROM twofold_checkpoints WHERE projection = ? AND generation = ?",
                (projection, generation),
            )
            .fetchone()
        )
        if row is None:
            raise GenerationChangedError(projection, generation)
        return int(row[0])

    # -- writing --------------------------------------------------------------------------

    async def commit_batch(
        self,
        projection: str,
        generation: int,
        apply: ApplyBatch,
        *,
        checkpoint: int,
        last_event_at: datetime | None,
        parked: Sequence[tuple[RecordedEvent, str]] = (),
    ) -> None:
        await self._run(
            self._commit_batch, projection, generation, apply, checkpoint, last_event_at, parked
        )

    def _commit_batch(
        self,
        projection: str,
        generation: int,
        apply: ApplyBatch,
        checkpoint: int,
        last_event_at: datetime | None,
        parked: Sequence[tuple[RecordedEvent, str]],
    ) -> None:
        conn = self._w()
        tx = SQLiteViewTransaction(conn, self.schema.tables_for(projection, generation))
        conn.execute("BEGIN IMMEDIATE")
        try:
            # A missing checkpoint row means a rebuild or reset (maybe in another process)
            # switched generations: this batch must not land anywhere. Checked under the
            # write lock, before the batch touches tables that may be gone.
            if not self._generation_written(conn, projection, generation):
                raise GenerationChangedError(projection, generation)
            apply(tx)
            tx.flush()
            # Views and checkpoint commit together.
            conn.execute(
                "UPDATE twofold_checkpoints SET position = ? WHERE projection = ? "
                "AND generation = ?",
                (checkpoint, projection, generation),
            )
            if parked:
                now = to_us(None)
                conn.executemany(
                    "INSERT OR REPLACE INTO twofold_dead_letters VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            projection,
                            generation,
                            r.position,
                            r.stream_id,
                            why,
                            now,
                            encode_record(r),
                        )
                        for r, why in parked
                    ],
                )
            conn.execute(
                "UPDATE twofold_projections SET updated_at = ?, last_event_at = ? "
                "WHERE name = ? AND generation = ?",
                (to_us(None), to_us(last_event_at), projection, generation),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _generation_written(conn: sqlite3.Connection, projection: str, generation: int) -> bool:
        row = conn.execute(
            "SELECT 1 FROM twofold_checkpoints WHERE projection = ? AND generation = ?",
            (projection, generation),
        ).fetchone()
        return row is not None

    async def begin_rebuild(self, projection: str, collections: Sequence[Collection]) -> int:
        self.schema.register(projection, collections)
        generation: int = await self._run(self._begin_rebuild, projection, collections)
        return generation

    def _begin_rebuild(self, projection: str, collections: Sequence[Collection]) -> int:
        conn = self._w()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT MAX(generation) FROM twofold_checkpoints WHERE projection = ?",
                (projection,),
            ).fetchone()
            if row is None or row[0] is None:
                raise UnknownProjectionError(projection, self.schema.projections())
            generation = int(row[0]) + 1
            conn.execute(
                "INSERT INTO twofold_checkpoints (projection, generation, position) "
                "VALUES (?, ?, 0)",
                (projection, generation),
            )
            for collection in collections:
                self._create_collection(conn, collection, generation, active=False)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return generation

    async def switch(self, projection: str, generation: int) -> None:
        await self._run(self._switch, projection, generation)

    def _switch(self, projection: str, generation: int) -> None:
        conn = self._w()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT generation FROM twofold_projections WHERE name = ?", (projection,)
            ).fetchone()
            if row is None:
                raise UnknownProjectionError(projection, self.schema.projections())
            old = int(row[0])
            for collection in self.schema.collections(projection):
                self._create_collection(conn, collection, generation, active=True)
            # Every other generation goes: the old copy, and any abandoned rebuild.
            stale = [
                int(r[0])
                for r in conn.execute(
                    "SELECT generation FROM twofold_checkpoints WHERE projection = ? "
                    "AND generation != ?",
                    (projection, generation),
                ).fetchall()
            ]
            for gen in {old, *stale} - {generation}:
                for collection in self.schema.collections(projection):
                    conn.execute(f"DROP TABLE IF EXISTS {collection_table(collection.name, gen)}")
                conn.execute(
                    "DELETE FROM twofold_checkpoints WHERE projection = ? AND generation = ?",
                    (projection, gen),
                )
                conn.execute(
                    "DELETE FROM twofold_dead_letters WHERE projection = ? AND generation = ?",
                    (projection, gen),
                )
            conn.execute(
                "UPDATE twofold_projections SET generation = ?, status = ?, error = NULL, "
                "updated_at = ?, revision = revision + 1 WHERE name = ?",
                (generation, ProjectionStatus.RUNNING.value, to_us(None), projection),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def reset(self, projection: str, collections: Sequence[Collection]) -> None:
        generation = await self.begin_rebuild(projection, collections)
        await self.switch(projection, generation)

    # -- dead letters ---------------------------------------------------------------------

    async def dead_letters(self, projection: str, generation: int) -> list[DeadLetter]:
        return await self._run(self._dead_letters, projection, generation)  # type: ignore[no-any-return]

    def _dead_letters(self, projection: str, generation: int) -> list[DeadLetter]:
        from twofold.adapters.sqlite.views_tx import decode_record

        rows = (
            self._w()
            .execute(
                "SELECT position, stream_id, error, parked_at, record FROM twofold_dead_letters "
                "WHERE projection = ? AND generation = ? ORDER BY position",
                (projection, generation),
            )
            .fetchall()
        )
        return [
            DeadLetter(
                projection=projection,
                position=r[0],
                stream_id=r[1],
                error=r[2],
                parked_at=from_us(r[3]) or datetime.min,
                record=decode_record(r[4]),
            )
            for r in rows
        ]

    async def release_dead_letters(
        self, projection: str, generation: int, apply: ApplyBatch, positions: Sequence[int]
    ) -> None:
        await self._run(self._release, projection, generation, apply, positions)

    def _release(
        self, projection: str, generation: int, apply: ApplyBatch, positions: Sequence[int]
    ) -> None:
        conn = self._w()
        tx = SQLiteViewTransaction(conn, self.schema.tables_for(projection, generation))
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not self._generation_written(conn, projection, generation):
                raise GenerationChangedError(projection, generation)
            apply(tx)
            tx.flush()
            conn.executemany(
                "DELETE FROM twofold_dead_letters WHERE projection = ? AND generation = ? "
                "AND position = ?",
                [(projection, generation, p) for p in positions],
            )
            conn.execute(
                "UPDATE twofold_projections SET revision = revision + 1 WHERE name = ?",
                (projection,),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- reading --------------------------------------------------------------------------

    def _read(self, sql: str, args: Sequence[Any]) -> list[Any]:
        if self._closed or self._reader is None:
            raise StoreClosedError("read store")
        with self._reader_lock:
            return self._reader.execute(sql, args).fetchall()

    async def _query(self, sql: str, args: Sequence[Any]) -> list[Any]:
        if self.inline_reads:
            return self._read(sql, args)
        return await self._run(self._read, sql, args)  # type: ignore[no-any-return]

    async def get(self, collection: str, key: str) -> Document | None:
        rows = await self._query(self.schema.get_sql(collection), (key,))
        return decode_json(rows[0][0]) if rows else None

    async def get_json(self, collection: str, key: str) -> bytes | None:
        rows = await self._query(self.schema.get_sql(collection), (key,))
        return bytes(rows[0][0]) if rows else None

    async def find(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
        order_by: Sequence[SortBy] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Document]:
        sql, args = self.schema.select_sql(
            collection, "doc", where, between, order_by, limit, offset
        )
        return [decode_json(row[0]) for row in await self._query(sql, args)]

    async def count(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> int:
        sql, args = self.schema.select_sql(collection, "COUNT(*)", where, between, (), None, 0)
        rows = await self._query(sql, args)
        return int(rows[0][0])

"""Reads of the SQLite views with the position they reflect, for the cache.

Each answer comes with its projection's active generation and checkpoint read in the same
snapshot: one SELECT for a document (a statement is one read transaction), a deferred
transaction around the two SELECTs of a list answer (WAL: one snapshot for both). Reads run
inline on a connection of their own, like the read store's (page-cache reads of
microseconds cost less than a hop to a thread).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from twofold.adapters.sqlite.read_store import SQLiteReadStore
from twofold.adapters.sqlite.views_sql import collection_table
from twofold.application.cache import Loaded
from twofold.errors import QueryError, StoreClosedError, UnknownProjectionError

__all__ = ["SQLitePositionedReader"]

_ACTIVE = (
    "SELECT p.generation, c.position{what} FROM twofold_projections p "
    "JOIN twofold_checkpoints c ON c.projection = p.name AND c.generation = p.generation "
    "WHERE p.name = ?"
)


class SQLitePositionedReader:
    """The PositionedReader port over a SQLiteReadStore's file."""

    def __init__(self, store: SQLiteReadStore) -> None:
        self.store = store
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._get_sql: dict[tuple[str, str], str] = {}
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreClosedError("cache reads")
        if self._conn is None:
            conn = sqlite3.connect(
                self.store.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            conn.execute("PRAGMA busy_timeout = 30000")
            self._conn = conn
        return self._conn

    def _owned(self, projection: str, collection: str) -> None:
        schema = self.store.schema
        schema.collection(collection)  # QueryError naming the known ones when unknown
        if collection not in {c.name for c in schema.collections(projection)}:
            raise QueryError(f"collection {collection!r} is not a view of {projection!r}")

    def _active(self, row: Any, projection: str) -> tuple[int, int]:
        if row is None:
            raise UnknownProjectionError(projection, self.store.schema.projections())
        return int(row[0]), int(row[1])

    async def load_json(self, projection: str, collection: str, key: str) -> Loaded:
        sql = self._get_sql.get((projection, collection))
        if sql is None:
            self._owned(projection, collection)
            table = collection_table(collection, None)
            sql = _ACTIVE.format(what=f", (SELECT doc FROM {table} WHERE key = ?)")
            self._get_sql[(projection, collection)] = sql
        with self._lock:
            row = self._connection().execute(sql, (key, projection)).fetchone()
        generation, position = self._active(row, projection)
        body = row[2]
        return Loaded(None if body is None else bytes(body), position, generation)

    async def load_find(
        self,
        projection: str,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
        order_by: Sequence[tuple[str, str]] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> Loaded:
        self._owned(projection, collection)
        sql, args = self.store.schema.select_sql(
            collection, "doc", where, between, order_by, limit, offset
        )
        generation, position, rows = self._snapshot(projection, sql, args)
        return Loaded(b"[" + b",".join(bytes(r[0]) for r in rows) + b"]", position, generation)

    async def load_count(
        self,
        projection: str,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> Loaded:
        self._owned(projection, collection)
        sql, args = self.store.schema.select_sql(
            collection, "COUNT(*)", where, between, (), None, 0
        )
        generation, position, rows = self._snapshot(projection, sql, args)
        return Loaded(str(int(rows[0][0])).encode(), position, generation)

    def _snapshot(
        self, projection: str, sql: str, args: Sequence[Any]
    ) -> tuple[int, int, list[Any]]:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                active = conn.execute(_ACTIVE.format(what=""), (projection,)).fetchone()
                rows = conn.execute(sql, args).fetchall()
            finally:
                conn.execute("COMMIT")
        generation, position = self._active(active, projection)
        return generation, position, rows

    async def close(self) -> None:
        self._closed = True
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

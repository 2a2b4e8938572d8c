"""Reads of the PostgreSQL views with the position they reflect, for the cache.

Each answer is ONE statement that also reads the projection's active generation and
checkpoint: a statement sees one snapshot, so the answer and the checkpoint agree
(views and checkpoint commit together). Reads use a small pool of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twofold.adapters.postgres._pool import ConnectionPool
from twofold.adapters.postgres.read_store import PostgresReadStore
from twofold.adapters.postgres.views_sql import active_view
from twofold.application.cache import Loaded
from twofold.errors import QueryError, UnknownProjectionError

__all__ = ["PostgresPositionedReader"]


class PostgresPositionedReader:
    """The PositionedReader port over a PostgresReadStore's schema."""

    def __init__(self, store: PostgresReadStore, *, pool_size: int = 4) -> None:
        self.store = store
        self._pool = ConnectionPool(store.url, size=pool_size)
        s = f'"{store.schema}"'
        self._active = (
            "SELECT p.generation, c.position{what} FROM "
            f"{s}.projections p JOIN {s}.checkpoints c "
            "ON c.projection = p.name AND c.generation = p.generation WHERE p.name = %s"
        )
        self._get_sql: dict[tuple[str, str], str] = {}

    def _owned(self, projection: str, collection: str) -> None:
        views = self.store.views
        views.collection(collection)  # QueryError naming the known ones when unknown
        if collection not in {c.name for c in views.collections(projection)}:
            raise QueryError(f"collection {collection!r} is not a view of {projection!r}")

    async def _row(
        self, projection: str, sql: str, args: Sequence[Any], *, prepare: bool | None = None
    ) -> tuple[Any, ...]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql, args, prepare=prepare)
            row = await cursor.fetchone()
        if row is None:
            raise UnknownProjectionError(projection, self.store.views.projections())
        return tuple(row)

    async def load_json(self, projection: str, collection: str, key: str) -> Loaded:
        sql = self._get_sql.get((projection, collection))
        if sql is None:
            self._owned(projection, collection)
            view = active_view(self.store.schema, collection)
            sql = self._active.format(what=f", (SELECT doc::text FROM {view} WHERE key = %s)")
            self._get_sql[(projection, collection)] = sql
        row = await self._row(projection, sql, (key, projection), prepare=True)
        body = None if row[2] is None else str(row[2]).encode()
        return Loaded(body, int(row[1]), int(row[0]))

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
        select, args = self.store.views.select_sql(
            collection, "doc::text", where, between, order_by, limit, offset
        )
        # ARRAY(subquery) keeps the subquery's order.
        sql = self._active.format(what=f", ARRAY({select})")
        row = await self._row(projection, sql, [*args, projection])
        body = b"[" + b",".join(str(doc).encode() for doc in row[2]) + b"]"
        return Loaded(body, int(row[1]), int(row[0]))

    async def load_count(
        self,
        projection: str,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> Loaded:
        self._owned(projection, collection)
        select, args = self.store.views.select_sql(
            collection, "count(*)", where, between, (), None, 0
        )
        sql = self._active.format(what=f", ({select})")
        row = await self._row(projection, sql, [*args, projection])
        return Loaded(str(int(row[2])).encode(), int(row[1]), int(row[0]))

    async def close(self) -> None:
        await self._pool.close()

"""The IdempotencyStore port on PostgreSQL, in the event store's schema.

The first answer stored for a key wins, also between processes: ``put`` inserts with
``ON CONFLICT DO NOTHING`` and returns whatever the table holds for the key afterwards.
"""

from __future__ import annotations

from datetime import timedelta

from psycopg import sql

from twofold.adapters._idempotency import (
    DEFAULT_KEEP_FOR,
    PRUNE_BATCH,
    PRUNE_EVERY,
    check_keep_for,
    check_key,
    check_put,
)
from twofold.adapters.postgres._pool import ConnectionPool, connect
from twofold.adapters.postgres.event_store import (
    DEFAULT_SCHEMA,
    PostgresEventStore,
    check_schema_name,
)
from twofold.adapters.postgres.migrations import migrate

__all__ = ["PostgresIdempotencyStore"]


class PostgresIdempotencyStore:
    """Remembers the first answer given to each idempotency key, in ``<schema>.idempotency_keys``.

    ``PostgresIdempotencyStore.of(store)`` shares an open event store's connections and
    schema (closing it then closes nothing; the event store owns them);
    ``await PostgresIdempotencyStore.open(url, schema=...)`` has connections of its own.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        schema: str,
        *,
        owns_pool: bool,
        keep_for: timedelta = DEFAULT_KEEP_FOR,
    ) -> None:
        ident = sql.Identifier(check_schema_name(schema))
        self._pool = pool
        self._owns_pool = owns_pool
        self._keep_for = check_keep_for(keep_for)
        self._puts = 0
        # The server's clock decides what is old (all processes share it). An answer older
        # than keep_for is forgotten: get does not see it, and a put takes its place.
        self._get = sql.SQL(
            "SELECT fingerprint, result FROM {}.idempotency_keys WHERE key = %s"
            " AND created_at >= now() - %s"
        ).format(ident)
        self._put = sql.SQL(
            "INSERT INTO {t}.idempotency_keys AS old (key, fingerprint, result)"
            " VALUES (%s, %s, %s) ON CONFLICT (key) DO UPDATE"
            " SET fingerprint = excluded.fingerprint, result = excluded.result,"
            " created_at = now() WHERE old.created_at < now() - %s"
            " RETURNING fingerprint, result"
        ).format(t=ident)
        self._prune = sql.SQL(
            "DELETE FROM {t}.idempotency_keys WHERE key IN (SELECT key FROM"
            " {t}.idempotency_keys WHERE created_at < now() - %s ORDER BY created_at LIMIT %s)"
        ).format(t=ident)

    @classmethod
    def of(
        cls, store: PostgresEventStore, *, keep_for: timedelta = DEFAULT_KEEP_FOR
    ) -> PostgresIdempotencyStore:
        return cls(store.pool, store.schema, owns_pool=False, keep_for=keep_for)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        migrate_schema: bool = True,
        pool_size: int = 2,
        keep_for: timedelta = DEFAULT_KEEP_FOR,
    ) -> PostgresIdempotencyStore:
        check_schema_name(schema)
        check_keep_for(keep_for)
        if migrate_schema:
            conn = await connect(url, role="migrate")
            try:
                await migrate(conn, schema)
            finally:
                await conn.close()
        return cls(ConnectionPool(url, size=pool_size), schema, owns_pool=True, keep_for=keep_for)

    @property
    def keep_for(self) -> timedelta:
        return self._keep_for

    async def get(self, key: str) -> tuple[str, bytes] | None:
        _check_key(key)
        async with self._pool.connection() as conn:
            cur = await conn.execute(self._get, (key, self._keep_for), binary=True)
            row = await cur.fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    async def put(self, key: str, fingerprint: str, result: bytes) -> tuple[str, bytes]:
        _check_key(key)
        check_put(key, fingerprint, result)
        self._puts += 1
        if self._puts % PRUNE_EVERY == 0:
            await self.prune()
        async with self._pool.connection() as conn:
            while True:
                cur = await conn.execute(
                    self._put, (key, fingerprint, result, self._keep_for), binary=True
                )
                row = await cur.fetchone()
                if row is None:
                    # Taken already, and not expired; read the first answer. The loop only
                    # turns again if that answer expired in between.
                    cur = await conn.execute(self._get, (key, self._keep_for), binary=True)
                    row = await cur.fetchone()
                if row is not None:
                    return row[0], bytes(row[1])

    async def prune(self) -> int:
        """Delete up to PRUNE_BATCH of the keys kept longer than ``keep_for``; how many."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(self._prune, (self._keep_for, PRUNE_BATCH))
            return cur.rowcount

    async def close(self) -> None:
        if self._owns_pool:
            await self._pool.close()


def _check_key(key: object) -> None:
    check_key(key)
    assert isinstance(key, str)
    if "\x00" in key:
        raise ValueError("an idempotency key must not contain NUL characters")

"""The IdempotencyStore port on PostgreSQL, in the event store's schema.

The first answer stored for a key wins, also between processes: ``put`` inserts with
``ON CONFLICT DO NOTHING`` and returns whatever the table holds for the key afterwards.
"""

from __future__ import annotations

from psycopg import sql

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

    def __init__(self, pool: ConnectionPool, schema: str, *, owns_pool: bool) -> None:
        ident = sql.Identifier(check_schema_name(schema))
        self._pool = pool
        self._owns_pool = owns_pool
        self._get = sql.SQL(
            "SELECT fingerprint, result FROM {}.idempotency_keys WHERE key = %s"
        ).format(ident)
        self._put = sql.SQL(
            "INSERT INTO {}.idempotency_keys (key, fingerprint, result) VALUES (%s, %s, %s)"
            " ON CONFLICT (key) DO NOTHING RETURNING fingerprint, result"
        ).format(ident)

    @classmethod
    def of(cls, store: PostgresEventStore) -> PostgresIdempotencyStore:
        return cls(store.pool, store.schema, owns_pool=False)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        migrate_schema: bool = True,
        pool_size: int = 2,
    ) -> PostgresIdempotencyStore:
        check_schema_name(schema)
        if migrate_schema:
            conn = await connect(url)
            try:
                await migrate(conn, schema)
            finally:
                await conn.close()
        return cls(ConnectionPool(url, size=pool_size), schema, owns_pool=True)

    async def get(self, key: str) -> tuple[str, bytes] | None:
        _check_key(key)
        async with self._pool.connection() as conn:
            cur = await conn.execute(self._get, (key,), binary=True)
            row = await cur.fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    async def put(self, key: str, fingerprint: str, result: bytes) -> tuple[str, bytes]:
        _check_key(key)
        if not isinstance(fingerprint, str) or not isinstance(result, bytes):
            raise TypeError("fingerprint must be a str and result must be bytes")
        async with self._pool.connection() as conn:
            while True:
                cur = await conn.execute(self._put, (key, fingerprint, result), binary=True)
                row = await cur.fetchone()
                if row is None:
                    # Taken already; read the first answer. The loop only turns again if
                    # that row vanished in between (keys are never deleted by twofold).
                    cur = await conn.execute(self._get, (key,), binary=True)
                    row = await cur.fetchone()
                if row is not None:
                    return row[0], bytes(row[1])

    async def close(self) -> None:
        if self._owns_pool:
            await self._pool.close()


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"an idempotency key must be a non-empty str, got {key!r}")
    if "\x00" in key:
        raise ValueError("an idempotency key must not contain NUL characters")

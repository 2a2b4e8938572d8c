"""The relay's checkpoints and parked messages in PostgreSQL (the event store's database,
or another), in tables of their own: ``<schema>.relay_checkpoints`` and ``relay_parked``.

The tables are created when missing, under a transaction-scoped advisory lock so that
several processes opening the same schema at once do not trip over each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from twofold.adapters.postgres._pool import ConnectionPool
from twofold.adapters.postgres.event_store import DEFAULT_SCHEMA, check_schema_name
from twofold.adapters.postgres.opening import split_schema
from twofold.application.relay.store import ParkedMessage, RelayCheckpoint

__all__ = ["PostgresRelayStore", "open_postgres_relay_store"]

_CREATE = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.relay_checkpoints (
    destination text PRIMARY KEY,
    position bigint NOT NULL,
    sequence bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.relay_parked (
    destination text NOT NULL,
    position bigint NOT NULL,
    stream_id text NOT NULL,
    sequence bigint,
    error text NOT NULL,
    parked_at timestamptz NOT NULL,
    PRIMARY KEY (destination, position)
);
"""

_ADVANCE = """
INSERT INTO {schema}.relay_checkpoints AS c VALUES (%s, %s, %s)
ON CONFLICT (destination) DO UPDATE
SET position = greatest(c.position, excluded.position),
    sequence = greatest(c.sequence, excluded.sequence)
"""


class PostgresRelayStore:
    def __init__(self, pool: ConnectionPool, schema: str) -> None:
        self._pool = pool
        self._schema = sql.Identifier(schema)

    @classmethod
    async def open(cls, url: str, *, schema: str = DEFAULT_SCHEMA) -> PostgresRelayStore:
        store = cls(ConnectionPool(url, size=2), check_schema_name(schema))
        try:
            async with store._pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('twofold_relay'))")
                await conn.execute(store._sql(_CREATE))
        except BaseException:
            await store._pool.close()
            raise
        return store

    def _sql(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(schema=self._schema)

    async def prepare(self, destination: str) -> RelayCheckpoint:
        async with self._pool.connection() as conn:
            await conn.execute(
                self._sql(
                    "INSERT INTO {schema}.relay_checkpoints VALUES (%s, 0, 0) "
                    "ON CONFLICT DO NOTHING"
                ),
                (destination,),
            )
        return await self.checkpoint(destination)

    async def checkpoint(self, destination: str) -> RelayCheckpoint:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                self._sql(
                    "SELECT position, sequence FROM {schema}.relay_checkpoints "
                    "WHERE destination = %s"
                ),
                (destination,),
            )
            row = await cursor.fetchone()
        return RelayCheckpoint(destination, *row) if row else RelayCheckpoint(destination)

    async def advance(self, destination: str, *, position: int, sequence: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(self._sql(_ADVANCE), (destination, position, sequence))

    async def park(self, messages: Sequence[ParkedMessage]) -> None:
        if not messages:
            return
        async with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor() as cursor,
        ):
            await cursor.executemany(
                self._sql(
                    "INSERT INTO {schema}.relay_parked VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING"
                ),
                [
                    (m.destination, m.position, m.stream_id, m.sequence, m.error, m.parked_at)
                    for m in messages
                ],
            )

    async def parked(self, destination: str, stream_id: str | None = None) -> list[ParkedMessage]:
        query = (
            "SELECT position, stream_id, sequence, error, parked_at FROM {schema}.relay_parked "
            "WHERE destination = %s"
        )
        args: tuple[Any, ...] = (destination,)
        if stream_id is not None:
            query += " AND stream_id = %s"
            args += (stream_id,)
        async with self._pool.connection() as conn:
            cursor = await conn.execute(self._sql(query + " ORDER BY position"), args)
            rows = await cursor.fetchall()
        return [
            ParkedMessage(
                destination=destination,
                position=position,
                stream_id=stream,
                sequence=sequence,
                error=error,
                parked_at=parked_at,
            )
            for position, stream, sequence, error, parked_at in rows
        ]

    async def release(
        self, destination: str, positions: Sequence[int], *, sequence: int | None = None
    ) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                self._sql(
                    "DELETE FROM {schema}.relay_parked "
                    "WHERE destination = %s AND position = ANY(%s)"
                ),
                (destination, list(positions)),
            )
            if sequence is not None:
                await conn.execute(self._sql(_ADVANCE), (destination, 0, sequence))

    async def close(self) -> None:
        await self._pool.close()


async def open_postgres_relay_store(url: str) -> PostgresRelayStore:
    """The relay store in the URL's schema (twofold's ``schema`` parameter, default twofold)."""
    conninfo, schema = split_schema(url)
    return await PostgresRelayStore.open(conninfo, schema=schema)

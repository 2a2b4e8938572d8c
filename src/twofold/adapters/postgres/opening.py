"""Opening the PostgreSQL adapters from a ``TWOFOLD_*`` URL, for the composition root.

The URL is libpq's, plus one parameter of twofold's own, ``schema`` (default ``twofold``)::

    postgresql://user:secret@db.internal:5432/shop?schema=orders&sslmode=require
"""

from __future__ import annotations

from twofold.adapters.postgres._urls import split_schema
from twofold.adapters.postgres.event_store import PostgresEventStore
from twofold.adapters.postgres.idempotency import PostgresIdempotencyStore
from twofold.adapters.postgres.read_store import PostgresReadStore

__all__ = ["open_postgres_event_store", "open_postgres_read_store", "split_schema"]


async def open_postgres_event_store(
    url: str,
) -> tuple[PostgresEventStore, PostgresIdempotencyStore]:
    """The event store (schema created or upgraded) and an idempotency store sharing it."""
    conninfo, schema = split_schema(url)
    store = await PostgresEventStore.open(conninfo, schema=schema)
    return store, PostgresIdempotencyStore.of(store)


async def open_postgres_read_store(url: str) -> PostgresReadStore:
    """The read store (bookkeeping tables created or upgraded) in the URL's schema."""
    conninfo, schema = split_schema(url)
    return await PostgresReadStore.open(conninfo, schema=schema)

"""Opening the PostgreSQL adapters from a ``TWOFOLD_*`` URL, for the composition root.

The URL is libpq's, plus one parameter of twofold's own, ``schema`` (default ``twofold``)::

    postgresql://user:secret@db.internal:5432/shop?schema=orders&sslmode=require
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from twofold.adapters.postgres.event_store import (
    DEFAULT_SCHEMA,
    PostgresEventStore,
    check_schema_name,
)
from twofold.adapters.postgres.idempotency import PostgresIdempotencyStore
from twofold.adapters.postgres.read_store import PostgresReadStore
from twofold.errors import ConfigurationError

__all__ = ["open_postgres_event_store", "open_postgres_read_store", "split_schema"]


def split_schema(url: str) -> tuple[str, str]:
    """``(url for libpq, schema)``: takes twofold's ``schema`` parameter out of the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"{url!r} is not a PostgreSQL URL; write postgresql://user@host:5432/database"
        )
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    rest = [(key, value) for key, value in query if key != "schema"]
    schema = check_schema_name(schemas[-1]) if schemas else DEFAULT_SCHEMA
    return urlunsplit(parts._replace(query=urlencode(rest))), schema


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

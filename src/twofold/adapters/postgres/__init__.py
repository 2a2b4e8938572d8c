"""PostgreSQL adapters: the event store and the idempotency store, in one schema.

Needs the ``postgres`` extra (``pip install 'twofold[postgres]'``, psycopg 3).
"""

from twofold.adapters.postgres.event_store import DEFAULT_SCHEMA, PostgresEventStore
from twofold.adapters.postgres.idempotency import PostgresIdempotencyStore
from twofold.adapters.postgres.migrations import MIGRATIONS, migrate
from twofold.adapters.postgres.opening import (
    open_postgres_event_store,
    open_postgres_read_store,
    split_schema,
)

__all__ = [
    "DEFAULT_SCHEMA",
    "MIGRATIONS",
    "PostgresEventStore",
    "PostgresIdempotencyStore",
    "migrate",
    "open_postgres_event_store",
    "open_postgres_read_store",
    "split_schema",
]

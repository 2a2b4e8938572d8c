"""PostgreSQL adapters: the event store, the idempotency store and the read store.

Any of them may share one schema; with both stores in one schema, projections can be
applied inside the appends' own transactions (``InlineProjection``, single-database mode).

Where things live: ``event_store`` and ``append/`` (the write path: the group-commit writer,
its SQL, the loop and thread paths); ``read_store`` and ``views_*`` (views, their DDL and
the bookkeeping tables); ``projections/`` (leases, coordination, lanes, checkpoint
notifications: who runs which projection and how the others hear of it); ``_pool`` (every
connection, and the one pool per process); ``_horizon`` and ``_listener`` (what readers may
see, and how they hear of appends).

Needs the ``postgres`` extra (``pip install 'twofold[postgres]'``, psycopg 3).
"""

from twofold.adapters.postgres.event_store import DEFAULT_SCHEMA, PostgresEventStore
from twofold.adapters.postgres.idempotency import PostgresIdempotencyStore
from twofold.adapters.postgres.inline import InlineProjection, check_single_database
from twofold.adapters.postgres.migrations import MIGRATIONS, migrate
from twofold.adapters.postgres.opening import (
    open_postgres_event_store,
    open_postgres_read_store,
    split_schema,
)
from twofold.adapters.postgres.read_store import PostgresReadStore

__all__ = [
    "DEFAULT_SCHEMA",
    "MIGRATIONS",
    "InlineProjection",
    "PostgresEventStore",
    "PostgresIdempotencyStore",
    "PostgresReadStore",
    "check_single_database",
    "migrate",
    "open_postgres_event_store",
    "open_postgres_read_store",
    "split_schema",
]

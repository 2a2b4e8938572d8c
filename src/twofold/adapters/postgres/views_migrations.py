"""The read store's bookkeeping tables, created and upgraded by twofold itself.

Versioned like the event store's schema (``migrations``), recorded in
``<schema>.view_migrations``, and run under the same transaction-scoped advisory lock, so
processes starting together (and an event store migrating the same schema) take turns.
Once released, a migration is never edited; a change is a new migration.

Layout (beside the view tables ``v_<collection>_g<generation>`` and the SQL views
``v_<collection>`` that name the active generations)::

    projections    one row per projection: active generation, status, error, attempts,
                   freshness, an operator's pause, and a revision moved by every change
                   made from outside its runner
    checkpoints    (projection, generation) -> position, and the identity of the event
                   store the copy is built from; no row: that copy is not written
    dead_letters   parked events, per projection and generation
"""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg
from psycopg import sql

from twofold.errors import ConfigurationError

__all__ = ["VIEW_MIGRATIONS", "migrate_views"]

VIEW_MIGRATIONS: tuple[tuple[int, str, tuple[LiteralString, ...]], ...] = (
    (
        1,
        "projections, checkpoints, dead letters",
        (
            """
            CREATE TABLE {schema}.projections (
                name          text PRIMARY KEY,
                generation    integer NOT NULL,
                status        text NOT NULL,
                error         text,
                updated_at    timestamptz,
                last_event_at timestamptz
            )
            """,
            """
            CREATE TABLE {schema}.checkpoints (
                projection text NOT NULL,
                generation integer NOT NULL,
                position   bigint NOT NULL,
                PRIMARY KEY (projection, generation)
            )
            """,
            """
            CREATE TABLE {schema}.dead_letters (
                projection text NOT NULL,
                generation integer NOT NULL,
                position   bigint NOT NULL,
                stream_id  text NOT NULL,
                error      text NOT NULL,
                parked_at  timestamptz NOT NULL,
                record     bytea NOT NULL,
                PRIMARY KEY (projection, generation, position)
            )
            """,
        ),
    ),
    (
        2,
        "retry attempts; the event store each copy is built from",
        (
            "ALTER TABLE {schema}.projections ADD COLUMN attempts integer NOT NULL DEFAULT 0",
            "ALTER TABLE {schema}.checkpoints ADD COLUMN event_store text",
        ),
    ),
    (
        3,
        "operators' pause; a revision that moves with every change made from outside",
        (
            "ALTER TABLE {schema}.projections ADD COLUMN paused boolean NOT NULL DEFAULT false",
            "ALTER TABLE {schema}.projections ADD COLUMN revision bigint NOT NULL DEFAULT 0",
        ),
    ),
)

_LATEST = VIEW_MIGRATIONS[-1][0]


def migrate_views(conn: psycopg.Connection[Any], schema: str) -> int:
    """Bring the read store's tables in ``schema`` to the latest version; return how many
    migrations ran. One transaction: all of it applies or none does."""
    ident = sql.Identifier(schema)
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('twofold.migrate:' || %s::text, 0))",
            (schema,),
        )
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.view_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(ident)
        )
        rows = conn.execute(sql.SQL("SELECT version FROM {}.view_migrations").format(ident))
        applied = {row[0] for row in rows.fetchall()}
        if applied and max(applied) > _LATEST:
            raise ConfigurationError(
                f"the views in schema {schema!r} are at migration {max(applied)}, newer than "
                f"this twofold knows ({_LATEST}); upgrade twofold or use another schema"
            )
        ran = 0
        for version, name, statements in VIEW_MIGRATIONS:
            if version in applied:
                continue
            for statement in statements:
                conn.execute(sql.SQL(statement).format(schema=ident))
            conn.execute(
                sql.SQL("INSERT INTO {}.view_migrations (version, name) VALUES (%s, %s)").format(
                    ident
                ),
                (version, name),
            )
            ran += 1
        return ran

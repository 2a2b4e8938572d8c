"""The read store's writes, as synchronous functions of a connection (run on a lane).

Lock order, the same in every transaction, so none waits for another in a cycle:
checkpoint rows first (a batch locks its own with the UPDATE that claims it; a switch locks
all of the projection's), then the projection's row, then tables. DDL (prepare, rebuild,
switch) also holds a transaction-scoped advisory lock per schema, so two processes never
create the same table at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import psycopg

from twofold.adapters.postgres.views_sql import (
    ViewSchema,
    active_view,
    collection_table,
    create_collection_sql,
)
from twofold.adapters.postgres.views_tx import PostgresViewTransaction
from twofold.application.views import ApplyBatch, Collection, IndexType, ProjectionStatus
from twofold.errors import GenerationChangedError, UnknownProjectionError
from twofold.records import RecordedEvent

__all__ = [
    "begin_rebuild",
    "bind_event_store",
    "commit_batch",
    "decode_record",
    "drop_copy",
    "prepare",
    "release_dead_letters",
    "set_paused",
    "set_status",
    "switch",
]

Conn = psycopg.Connection[Any]
_record_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(RecordedEvent)
_BACKFILL = {
    str: "CASE WHEN jsonb_typeof(doc->'{f}') = 'string' THEN doc->>'{f}' END",
    float: "CASE WHEN jsonb_typeof(doc->'{f}') = 'number' THEN (doc->'{f}')::float8 END",
    int: "CASE WHEN jsonb_typeof(doc->'{f}') <> 'number' THEN NULL"
    " WHEN (doc->'{f}')::numeric % 1 <> 0 THEN NULL"
    " WHEN abs((doc->'{f}')::numeric) >= 9223372036854775807 THEN NULL"
    " ELSE (doc->'{f}')::numeric::bigint END",
}


def decode_record(data: bytes) -> RecordedEvent:
    return _record_decoder.decode(data)


def _lock_ddl(conn: Conn, schema: str) -> None:
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('twofold.views:' || %s::text, 0))",
        (schema,),
    )


def _claim(conn: Conn, schema: str, projection: str, generation: int) -> None:
    """Lock the checkpoint row of a copy being written; none: the copy is gone."""
    found = conn.execute(
        f'SELECT 1 FROM "{schema}".checkpoints WHERE projection = %s AND generation = %s '
        "FOR UPDATE",
        (projection, generation),
    ).fetchone()
    if found is None:
        raise GenerationChangedError(projection, generation)


def _ensure_collection(
    conn: Conn, schema: str, collection: Collection, generation: int, *, active: bool
) -> None:
    table = collection_table(schema, collection.name, generation)
    exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
    if exists is None or exists[0] is None:
        for statement in create_collection_sql(schema, collection, generation):
            conn.execute(statement)
    else:
        _add_new_indexes(conn, table, collection, generation)
    if active:
        _point_view(conn, schema, collection, generation)


def _add_new_indexes(conn: Conn, table: str, collection: Collection, generation: int) -> None:
    """An index declared since the table was made: add its column, filled from the docs."""
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
        "AND NOT attisdropped",
        (table,),
    ).fetchall()
    have = {row[0] for row in rows}
    kinds: dict[IndexType, str] = {str: 'text COLLATE "C"', int: "bigint", float: "float8"}
    for field, kind in collection.indexes.items():
        if field in have:
            continue
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {field} {kinds[kind]}")
        conn.execute(f"UPDATE {table} SET {field} = {_BACKFILL[kind].format(f=field)}")
        conn.execute(
            f"CREATE INDEX v_{collection.name}_g{generation}_{field} ON {table} ({field}, key)"
        )


def _point_view(conn: Conn, schema: str, collection: Collection, generation: int) -> None:
    """Make ``v_<name>`` select from this generation's table, unless it does already.

    The view's comment records what it selects; replacing the view takes a lock readers
    wait for, so it is done only when something changed.
    """
    view = active_view(schema, collection.name)
    columns = ", ".join(("key", "doc", *collection.indexes))
    signature = f"g{generation}: {columns}"
    current = conn.execute(
        "SELECT obj_description(to_regclass(%s), 'pg_class')", (view,)
    ).fetchone()
    if current is not None and current[0] == signature:
        return
    conn.execute(f"DROP VIEW IF EXISTS {view}")
    table = collection_table(schema, collection.name, generation)
    conn.execute(f"CREATE VIEW {view} AS SELECT {columns} FROM {table}")
    conn.execute(f"COMMENT ON VIEW {view} IS '{signature}'")


# -- the operations -----------------------------------------------------------------------


def prepare(conn: Conn, schema: str, projection: str, collections: Sequence[Collection]) -> None:
    with conn.transaction():
        _lock_ddl(conn, schema)
        row = conn.execute(
            f'SELECT generation FROM "{schema}".projections WHERE name = %s', (projection,)
        ).fetchone()
        if row is None:
            generation = 1
            conn.execute(
                f'INSERT INTO "{schema}".projections (name, generation, status, updated_at) '
                "VALUES (%s, 1, %s, now())",
                (projection, ProjectionStatus.RUNNING.value),
            )
            conn.execute(
                f'INSERT INTO "{schema}".checkpoints (projection, generation, position) '
                "VALUES (%s, 1, 0)",
                (projection,),
            )
        else:
            generation = row[0]
        for collection in collections:
            _ensure_collection(conn, schema, collection, generation, active=True)


def commit_batch(
    conn: Conn,
    views: ViewSchema,
    projection: str,
    generation: int,
    apply: ApplyBatch,
    checkpoint: int,
    last_event_at: datetime | None,
    parked: Sequence[tuple[RecordedEvent, str]],
) -> bool:
    """Views, checkpoint and dead letters in one transaction; True if ``generation`` is
    the active copy (its readers may be told)."""
    schema = views.schema
    tx = PostgresViewTransaction(conn, views.tables_for(projection, generation))
    with conn.transaction():
        # Claim first: the checkpoint row is locked before any view row, and a batch at or
        # below the stored checkpoint (another writer got there first) writes nothing.
        claimed = conn.execute(
            f'UPDATE "{schema}".checkpoints SET position = %s WHERE projection = %s '
            "AND generation = %s AND position < %s",
            (checkpoint, projection, generation, checkpoint),
            prepare=True,
        ).rowcount
        if claimed != 1:
            raise GenerationChangedError(projection, generation)
        apply(tx)
        tx.flush()
        if parked:
            with conn.cursor() as cursor:
                cursor.executemany(
                    f'INSERT INTO "{schema}".dead_letters VALUES (%s, %s, %s, %s, %s, now(), %s) '
                    "ON CONFLICT (projection, generation, position) DO UPDATE "
                    "SET error = EXCLUDED.error, parked_at = EXCLUDED.parked_at",
                    [
                        (projection, generation, r.position, r.stream_id, why,
                         _record_encoder.encode(r))
                        for r, why in parked
                    ],
                )  # fmt: skip
        active = conn.execute(
            f'UPDATE "{schema}".projections SET updated_at = now(), last_event_at = %s '
            "WHERE name = %s AND generation = %s",
            (last_event_at, projection, generation),
            prepare=True,
        ).rowcount
    return active == 1


def release_dead_letters(
    conn: Conn,
    views: ViewSchema,
    projection: str,
    generation: int,
    apply: ApplyBatch,
    positions: Sequence[int],
) -> None:
    tx = PostgresViewTransaction(conn, views.tables_for(projection, generation))
    with conn.transaction():
        _claim(conn, views.schema, projection, generation)
        apply(tx)
        tx.flush()
        conn.execute(
            f'DELETE FROM "{views.schema}".dead_letters WHERE projection = %s '
            "AND generation = %s AND position = ANY(%s::bigint[])",
            (projection, generation, list(positions)),
        )
        conn.execute(
            f'UPDATE "{views.schema}".projections SET revision = revision + 1 WHERE name = %s',
            (projection,),
        )


def set_paused(conn: Conn, schema: str, projection: str, paused: bool) -> bool:
    """Store an operator's pause or resume; False when the projection is unknown."""
    changed = conn.execute(
        f'UPDATE "{schema}".projections SET paused = %s, revision = revision + 1, '
        "updated_at = now() WHERE name = %s",
        (paused, projection),
    ).rowcount
    return changed == 1


def drop_copy(conn: Conn, views: ViewSchema, projection: str, generation: int) -> None:
    """Drop a copy that is not the active one (a verification's scratch copy)."""
    schema = views.schema
    with conn.transaction():
        _lock_ddl(conn, schema)
        # Lock order: the checkpoint row (waits for a batch in flight), then the projection.
        conn.execute(
            f'SELECT 1 FROM "{schema}".checkpoints WHERE projection = %s AND generation = %s '
            "FOR UPDATE",
            (projection, generation),
        )
        active = conn.execute(
            f'SELECT 1 FROM "{schema}".projections WHERE name = %s AND generation = %s',
            (projection, generation),
        ).fetchone()
        if active is not None:
            return
        for collection in views.collections(projection):
            conn.execute(
                f"DROP TABLE IF EXISTS {collection_table(schema, collection.name, generation)}"
            )
        for table in ("checkpoints", "dead_letters"):
            conn.execute(
                f'DELETE FROM "{schema}".{table} WHERE projection = %s AND generation = %s',
                (projection, generation),
            )


def set_status(
    conn: Conn,
    schema: str,
    projection: str,
    status: ProjectionStatus,
    error: str | None,
    attempts: int,
) -> None:
    conn.execute(
        f'UPDATE "{schema}".projections SET status = %s, error = %s, attempts = %s, '
        "updated_at = now() WHERE name = %s",
        (status.value, error, attempts, projection),
    )


def bind_event_store(
    conn: Conn, schema: str, projection: str, generation: int, identity: str
) -> str:
    """Record ``identity`` for the copy unless another holds it with events; the one kept."""
    with conn.transaction():
        # A copy that holds nothing yet (checkpoint 0) may change hands.
        conn.execute(
            f'UPDATE "{schema}".checkpoints SET event_store = %s WHERE projection = %s '
            "AND generation = %s AND (event_store IS NULL OR position = 0) "
            "AND event_store IS DISTINCT FROM %s",
            (identity, projection, generation, identity),
        )
        row = conn.execute(
            f'SELECT event_store FROM "{schema}".checkpoints WHERE projection = %s '
            "AND generation = %s",
            (projection, generation),
        ).fetchone()
    if row is None:
        raise GenerationChangedError(projection, generation)
    return str(row[0])


def begin_rebuild(
    conn: Conn, views: ViewSchema, projection: str, collections: Sequence[Collection]
) -> int:
    schema = views.schema
    with conn.transaction():
        _lock_ddl(conn, schema)
        row = conn.execute(
            f'SELECT max(generation) FROM "{schema}".checkpoints WHERE projection = %s',
            (projection,),
        ).fetchone()
        if row is None or row[0] is None:
            raise UnknownProjectionError(projection, views.projections())
        generation = int(row[0]) + 1
        conn.execute(
            f'INSERT INTO "{schema}".checkpoints (projection, generation, position) '
            "VALUES (%s, %s, 0)",
            (projection, generation),
        )
        for collection in collections:
            # A table left by a copy whose bookkeeping is gone must not seed this one.
            conn.execute(
                f"DROP TABLE IF EXISTS {collection_table(schema, collection.name, generation)}"
            )
            _ensure_collection(conn, schema, collection, generation, active=False)
    return generation


def switch(conn: Conn, views: ViewSchema, projection: str, generation: int) -> int:
    """Make ``generation`` the active copy and drop every other; return its checkpoint."""
    schema = views.schema
    collections = views.collections(projection)
    with conn.transaction():
        _lock_ddl(conn, schema)
        # Waits for batches in flight on any copy; later ones find their copy gone.
        rows = conn.execute(
            f'SELECT generation, position FROM "{schema}".checkpoints WHERE projection = %s '
            "ORDER BY generation FOR UPDATE",
            (projection,),
        ).fetchall()
        positions = {int(g): int(p) for g, p in rows}
        row = conn.execute(
            f'SELECT generation FROM "{schema}".projections WHERE name = %s FOR UPDATE',
            (projection,),
        ).fetchone()
        if row is None:
            raise UnknownProjectionError(projection, views.projections())
        if generation not in positions:
            raise GenerationChangedError(projection, generation)
        for collection in collections:
            _ensure_collection(conn, schema, collection, generation, active=True)
        for gen in {int(row[0]), *positions} - {generation}:
            for collection in collections:
                conn.execute(
                    f"DROP TABLE IF EXISTS {collection_table(schema, collection.name, gen)}"
                )
            conn.execute(
                f'DELETE FROM "{schema}".checkpoints WHERE projection = %s AND generation = %s',
                (projection, gen),
            )
            conn.execute(
                f'DELETE FROM "{schema}".dead_letters WHERE projection = %s AND generation = %s',
                (projection, gen),
            )
        conn.execute(
            f'UPDATE "{schema}".projections SET generation = %s, status = %s, error = NULL, '
            "updated_at = now(), revision = revision + 1 WHERE name = %s",
            (generation, ProjectionStatus.RUNNING.value, projection),
        )
    return positions[generation]

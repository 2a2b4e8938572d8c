"""The PostgreSQL schema, created and upgraded by twofold itself.

Each migration has a number and runs once per schema, recorded in ``<schema>.migrations``.
``migrate`` is idempotent and safe when several processes start at once: it holds a
transaction-scoped advisory lock keyed by the schema name, so one process migrates while
the others wait and then find nothing left to do. A migration is never edited once
released; a change is a new migration.

Layout of one schema::

    event_position     sequence: global positions (gaps are normal: rolled back appends)
    events             the log; unique (event_id) and (stream_id, stream_version)
    snapshots          the latest snapshot per stream
    idempotency_keys   the first answer given to each command idempotency key
    store_identity     one row: the id made with the schema (EventStore.identity)
    append_batch()     validates and writes a batch of appends in one round trip
    read_append_horizon()  what a reader needs to know which positions are final
                       (_horizon.py); read_horizon() is its predecessor, kept for
                       processes of older versions

``data`` and ``metadata`` are ``bytea``: the store returns exactly the bytes it was given.
Statements may use ``{schema}``, ``{announce}`` (``_horizon.announcement``) and
``{appender_key}`` (``_horizon.appender_key``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, LiteralString

from psycopg import AsyncConnection, sql

from twofold.adapters.postgres._horizon import announcement, appender_key
from twofold.errors import ConfigurationError

__all__ = ["MIGRATIONS", "Migration", "migrate"]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    # ``{schema}`` stands for the quoted schema name; literal braces are doubled.
    statements: tuple[LiteralString, ...]


_APPEND_BATCH: LiteralString = """
CREATE FUNCTION {schema}.append_batch(
    a_stream text[], a_expected bigint[], a_count integer[],
    e_id uuid[], e_stream text[], e_type text[], e_schema integer[],
    e_data bytea[], e_meta bytea[],
    OUT ok boolean[], OUT actual bigint[], OUT e_pos bigint[], OUT recorded_at timestamptz)
LANGUAGE plpgsql AS $fn$
-- Appends are given in order; a_expected is an exact version, -1 for ANY, -2 for
-- STREAM_EXISTS. Each append is checked on its own against the version its stream has at
-- that point of the batch: a failed one is reported (ok false, actual = the stream's
-- version) and left out, the others are written. Events are inserted with positions in
-- batch order. A concurrent writer to the same stream surfaces as a unique violation,
-- which the caller resolves and retries.
DECLARE
    n_events integer := coalesce(cardinality(e_id), 0);
    e_ver integer[] := array_fill(NULL::integer, ARRAY[n_events]);
    seen text[] := '{{}}';
    seen_ver bigint[] := '{{}}';
    cur bigint;
    want bigint;
    k integer;
    j integer := 0;
    kept integer := 0;
    positions bigint[];
BEGIN
    -- Invariant the readers rely on (see read_horizon): this transaction has its xid
    -- before it takes any position.
    PERFORM pg_current_xact_id();
    recorded_at := now();
    IF cardinality(a_stream) = 1 THEN
        -- The common batch of one append, in the fewest statements.
        SELECT coalesce(max(e.stream_version), 0) INTO cur
          FROM {schema}.events e WHERE e.stream_id = a_stream[1];
        want := a_expected[1];
        ok := ARRAY[want = -1 OR (want = -2 AND cur > 0) OR want = cur];
        IF NOT ok[1] THEN
            actual := ARRAY[cur];
            RETURN;
        END IF;
        actual := ARRAY[cur + n_events];
        -- nextval runs row by row in the order of the arrays: positions grow with versions.
        WITH written AS (
            INSERT INTO {schema}.events
                (position, event_id, stream_id, stream_version, type, schema_version, data,
                 metadata)
            SELECT nextval('{schema}.event_position'), u.id, a_stream[1], cur + u.n, u.type,
                   u.sv, u.data, u.meta
              FROM unnest(e_id, e_type, e_schema, e_data, e_meta) WITH ORDINALITY
                   AS u(id, type, sv, data, meta, n)
            RETURNING position, stream_version)
        SELECT array_agg(position ORDER BY stream_version) INTO e_pos FROM written;
        RETURN;
    END IF;
    ok := '{{}}';
    actual := '{{}}';
    e_pos := array_fill(NULL::bigint, ARRAY[n_events]);
    FOR i IN 1 .. coalesce(cardinality(a_stream), 0) LOOP
        k := array_position(seen, a_stream[i]);
        IF k IS NULL THEN
            SELECT coalesce(max(e.stream_version), 0) INTO cur
              FROM {schema}.events e WHERE e.stream_id = a_stream[i];
            seen := seen || a_stream[i];
            seen_ver := seen_ver || cur;
            k := cardinality(seen);
        ELSE
            cur := seen_ver[k];
        END IF;
        want := a_expected[i];
        IF want = -1 OR (want = -2 AND cur > 0) OR want = cur THEN
            FOR v IN 1 .. a_count[i] LOOP
                e_ver[j + v] := cur + v;
            END LOOP;
            kept := kept + a_count[i];
            seen_ver[k] := cur + a_count[i];
            ok := ok || true;
            actual := actual || (cur + a_count[i]);
        ELSE
            ok := ok || false;
            actual := actual || cur;
        END IF;
        j := j + a_count[i];
    END LOOP;
    IF kept > 0 THEN
        positions := ARRAY(
            SELECT nextval('{schema}.event_position') AS p
              FROM generate_series(1, kept) ORDER BY p);
        k := 0;
        FOR i IN 1 .. n_events LOOP
            IF e_ver[i] IS NOT NULL THEN
                k := k + 1;
                e_pos[i] := positions[k];
            END IF;
        END LOOP;
        INSERT INTO {schema}.events
            (position, event_id, stream_id, stream_version, type, schema_version, data,
             metadata)
        SELECT u.pos, u.id, u.stream, u.ver, u.type, u.sv, u.data, u.meta
          FROM unnest(e_pos, e_id, e_stream, e_ver, e_type, e_schema, e_data, e_meta)
               AS u(pos, id, stream, ver, type, sv, data, meta)
         WHERE u.pos IS NOT NULL;
    END IF;
END
$fn$
"""

_READ_HORIZON: LiteralString = """
CREATE FUNCTION {schema}.read_horizon(
    OUT last_position bigint, OUT next_xid bigint, OUT oldest_xid bigint)
LANGUAGE plpgsql AS $fn$
-- Every position <= last_position is final once oldest_xid >= next_xid (now or in a later
-- call): see twofold.adapters.postgres._horizon for the argument.
DECLARE
    snap pg_snapshot;
BEGIN
    -- 1. The highest position handed out so far (sequences are not transactional).
    last_position := coalesce(pg_sequence_last_value('{schema}.event_position'), 0);
    -- 2. The next xid to be assigned, read after step 1. age(xid) counts from it when this
    --    transaction has no xid (it has none: we never write), so nothing is consumed.
    --    The snapshot's xmax only supplies the epoch; nextXid is within 2^31 of it.
    snap := pg_current_snapshot();
    next_xid := pg_snapshot_xmax(snap)::text::bigint + age(pg_snapshot_xmax(snap)::xid);
    -- 3. The oldest xid still running, observed after step 2.
    oldest_xid := pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
END
$fn$
"""

# Migration 3 keeps append_batch()'s body and changes how it starts: the transaction
# announces itself as an appender (``_horizon``), with its xid, before any position.
_XID_FIRST: LiteralString = """
    -- Invariant the readers rely on (see read_horizon): this transaction has its xid
    -- before it takes any position.
    PERFORM pg_current_xact_id();
"""
_ANNOUNCED: LiteralString = """
    -- Invariant the readers rely on (see read_append_horizon): this transaction is
    -- announced as an appender, with its xid, before it takes any position.
    PERFORM {announce};
"""
_APPEND_BATCH_ANNOUNCED = _APPEND_BATCH.replace(
    "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1
).replace(_XID_FIRST, _ANNOUNCED, 1)

_READ_APPEND_HORIZON: LiteralString = """
CREATE FUNCTION {schema}.read_append_horizon(
    OUT last_position bigint, OUT next_xid bigint, OUT oldest_xid bigint)
LANGUAGE plpgsql AS $fn$
-- Every position <= last_position is final once oldest_xid >= next_xid (now or in a later
-- call): see twofold.adapters.postgres._horizon for the argument.
DECLARE
    snap pg_snapshot;
    announced bigint;
BEGIN
    -- 1. The highest position handed out so far (sequences are not transactional).
    last_position := coalesce(pg_sequence_last_value('{schema}.event_position'), 0);
    -- 2. The next xid to be assigned, read after step 1. age(xid) counts from it when this
    --    transaction has no xid (it has none: we never write), so nothing is consumed.
    --    The snapshot's xmax only supplies the epoch; nextXid is within 2^31 of it.
    snap := pg_current_snapshot();
    next_xid := pg_snapshot_xmax(snap)::text::bigint + age(pg_snapshot_xmax(snap)::xid);
    -- 3. Observed after step 2, an xid below which no appender to this schema is running:
    --    the oldest running xid of all, when that is enough (it costs nothing) ...
    oldest_xid := pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
    IF oldest_xid < next_xid THEN
        -- ... else the oldest xid among the announced appenders (next_xid when there is
        -- none). A lock's objid holds the low 32 bits of its xid, which is within 2^31 of
        -- next_xid: their signed difference gives the rest.
        SELECT coalesce(min(next_xid
                            + ((l.objid::bigint - next_xid + 2147483648) & 4294967295)
                            - 2147483648), next_xid)
          INTO announced
          FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.classid = {appender_key}::oid
           AND l.objsubid = 2
           AND l.database = (SELECT d.oid FROM pg_database d
                              WHERE d.datname = current_database());
        oldest_xid := greatest(oldest_xid, announced);
    END IF;
END
$fn$
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "event log, snapshots, idempotency keys",
        (
            "CREATE SEQUENCE {schema}.event_position AS bigint",
            """
            CREATE TABLE {schema}.events (
                position       bigint PRIMARY KEY,
                event_id       uuid NOT NULL,
                stream_id      text NOT NULL,
                stream_version integer NOT NULL CHECK (stream_version > 0),
                type           text NOT NULL,
                schema_version integer NOT NULL,
                data           bytea NOT NULL,
                metadata       bytea NOT NULL,
                recorded_at    timestamptz NOT NULL DEFAULT now(),
                CONSTRAINT events_event_id_key UNIQUE (event_id),
                CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
            )
            """,
            """
            CREATE TABLE {schema}.snapshots (
                stream_id      text PRIMARY KEY,
                aggregate_type text NOT NULL,
                version        integer NOT NULL,
                schema_version integer NOT NULL,
                state          bytea NOT NULL,
                saved_at       timestamptz NOT NULL DEFAULT now()
            )
            """,
            """
            CREATE TABLE {schema}.idempotency_keys (
                key         text PRIMARY KEY,
                fingerprint text NOT NULL,
                result      bytea NOT NULL,
                created_at  timestamptz NOT NULL DEFAULT now()
            )
            """,
            _APPEND_BATCH,
            _READ_HORIZON,
        ),
    ),
    Migration(
        2,
        "idempotency keys expire: an index to find the old ones",
        ("CREATE INDEX idempotency_keys_created_at ON {schema}.idempotency_keys (created_at)",),
    ),
    Migration(
        3,
        "readers wait only for transactions that append to this schema",
        (_APPEND_BATCH_ANNOUNCED, _READ_APPEND_HORIZON),
    ),
    Migration(
        4,
        "the store's identity: read stores record it, and refuse views of another store",
        (
            "CREATE TABLE {schema}.store_identity (identity text PRIMARY KEY,"
            " created_at timestamptz NOT NULL DEFAULT now())",
            "INSERT INTO {schema}.store_identity (identity) VALUES (gen_random_uuid()::text)",
        ),
    ),
)

_LATEST = MIGRATIONS[-1].version


async def migrate(conn: AsyncConnection[Any], schema: str) -> int:
    """Bring ``schema`` to the latest version; return how many migrations ran.

    Runs in one transaction under an advisory lock: all of it applies or none does.
    """
    ident = sql.Identifier(schema)
    names = {
        "schema": ident,
        "announce": announcement(ident, conn),
        "appender_key": sql.Literal(appender_key(ident, conn)),
    }
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('twofold.migrate:' || %s::text, 0))",
            (schema,),
        )
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(ident)
        )
        cur = await conn.execute(sql.SQL("SELECT version FROM {}.migrations").format(ident))
        applied = {row[0] for row in await cur.fetchall()}
        if applied and max(applied) > _LATEST:
            raise ConfigurationError(
                f"schema {schema!r} is at migration {max(applied)}, newer than this twofold "
                f"knows ({_LATEST}); upgrade twofold or use another schema"
            )
        ran = 0
        for migration in MIGRATIONS:
            if migration.version in applied:
                continue
            for statement in migration.statements:
                await conn.execute(sql.SQL(statement).format(**names))
            await conn.execute(
                sql.SQL("INSERT INTO {}.migrations (version, name) VALUES (%s, %s)").format(ident),
                (migration.version, migration.name),
            )
            ran += 1
        return ran

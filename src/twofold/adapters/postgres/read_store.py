"""The PostgreSQL read store: views as JSONB documents, one table per collection and copy.

Layout (in the schema named by the URL's ``?schema=``): collection ``orders`` of generation
3 lives in table ``v_orders_g3`` (``key``, ``doc jsonb``, one typed column per declared
index); the SQL view ``v_orders`` names the active generation, so readers never need to know
which one it is. DDL is transactional in PostgreSQL, so a switch (blue/green) replaces the
views, drops the old tables and moves the bookkeeping in ONE transaction.

Connections:
- writes run on *lanes* (``lanes``): a thread with a synchronous connection, one per
  projection, so handlers (synchronous) run beside the transaction that commits their
  views with the checkpoint, and projections commit in parallel;
- reads (``get``, ``find``, ``count``, states, dead letters) use a small async pool;
- one LISTEN connection, opened by the first ``watch_checkpoints``.

A worker that holds a projection's lease hands its lease's lane to ``use_lane``: from then
on that projection's batches commit on the connection that holds the lock (a fence).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec
import psycopg

from twofold.adapters.postgres import views_ops as ops
from twofold.adapters.postgres._pool import ConnectionPool
from twofold.adapters.postgres.event_store import DEFAULT_SCHEMA, check_schema_name
from twofold.adapters.postgres.projections.checkpoints import (
    CheckpointCallback,
    CheckpointNotifier,
    CheckpointWatcher,
    checkpoint_channel,
)
from twofold.adapters.postgres.projections.lanes import Lane
from twofold.adapters.postgres.projections.leases import TAKEN, ProjectionLease, lease_key
from twofold.adapters.postgres.views_migrations import migrate_views
from twofold.adapters.postgres.views_sql import ViewSchema, collection_table
from twofold.adapters.postgres.views_tx import decode_document
from twofold.application.views import (
    ApplyBatch,
    Collection,
    DeadLetter,
    Document,
    ProjectionState,
    ProjectionStatus,
    SortBy,
    ViewCopy,
)
from twofold.errors import GenerationChangedError, StoreClosedError, UnknownProjectionError
from twofold.records import RecordedEvent

__all__ = ["PostgresReadStore"]


class PostgresReadStore:
    """The ReadStore port on PostgreSQL; build it with ``await PostgresReadStore.open(...)``.

    Options (keyword-only): ``pool_size`` read connections (default 4);
    ``notify_interval`` the most seconds a checkpoint reaches other processes late, in
    exchange for fewer notifications (default 0.01; see ``checkpoints``).
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        pool_size: int = 4,
        notify_interval: float = 0.01,
    ) -> None:
        self._schema = check_schema_name(schema)
        self._url = url
        self.views = ViewSchema(schema)
        self._pool = ConnectionPool(url, size=pool_size)
        self._admin = Lane(url, name="views-admin")
        self._lanes: dict[str, Lane] = {}
        self._leased: dict[str, Lane] = {}
        channel = checkpoint_channel(schema)
        self._notifier = CheckpointNotifier(self._pool, channel, interval=notify_interval)
        self._watcher = CheckpointWatcher(url, channel, self._active_checkpoints)
        self._closed = False
        s = f'"{schema}"'
        self._q_states = (
            "SELECT p.name, p.generation, coalesce(c.position, 0), p.status, p.error, "
            "p.updated_at, p.last_event_at, p.attempts, c.event_store, "
            f"(SELECT count(*) FROM {s}.dead_letters d WHERE d.projection = p.name "
            f"AND d.generation = p.generation), p.paused, p.revision FROM {s}.projections p "
            f"LEFT JOIN {s}.checkpoints c ON c.projection = p.name AND c.generation = p.generation"
        )
        self._q_checkpoint = (
            f"SELECT position FROM {s}.checkpoints WHERE projection = %s AND generation = %s"
        )
        self._q_dead_letters = (
            f"SELECT position, stream_id, error, parked_at, record FROM {s}.dead_letters "
            "WHERE projection = %s AND generation = %s ORDER BY position"
        )

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        migrate_schema: bool = True,
        **options: Any,
    ) -> PostgresReadStore:
        """Connect, create or upgrade the bookkeeping tables (unless ``migrate_schema=False``),
        and return a ready store."""
        store = cls(url, schema=schema, **options)
        if migrate_schema:
            try:
                await store._admin.run(migrate_views, store._schema)
            except BaseException:
                await store.close()
                raise
        return store

    @property
    def schema(self) -> str:
        return self._schema

    @property
    def url(self) -> str:
        return self._url

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("read store")

    # -- lanes ----------------------------------------------------------------------------

    def _lane(self, projection: str) -> Lane:
        leased = self._leased.get(projection)
        if leased is not None:
            return leased
        lane = self._lanes.get(projection)
        if lane is None:
            self._check_open()
            lane = self._lanes[projection] = Lane(self._url, name=f"views-{projection}")
        return lane

    def use_lane(self, projection: str, lane: Lane) -> None:
        """Write ``projection``'s views through ``lane`` (a lease's) until ``drop_lane``."""
        self._leased[projection] = lane

    def drop_lane(self, projection: str) -> None:
        self._leased.pop(projection, None)

    def lease(self, projection: str) -> ProjectionLease:
        """A lease on ``projection`` in this store's schema (not yet acquired)."""
        return ProjectionLease(self._url, schema=self._schema, projection=projection)

    async def lease_taken(self, lease: ProjectionLease) -> bool:
        """Whether some session holds ``lease`` now (a look in pg_locks, no connection of
        its own): only a lease that looks free is worth a connection to try."""
        rows = await self._fetch(TAKEN, (lease.key, lease.key))
        return bool(rows and rows[0][0])

    async def is_leased(self, projection: str) -> bool:
        """Whether some process holds ``projection``'s lease, so runs it, now."""
        key = lease_key(self._schema, projection)
        rows = await self._fetch(TAKEN, (key, key))
        return bool(rows and rows[0][0])

    # -- checkpoints across processes ------------------------------------------------------

    async def watch_checkpoints(self, callback: CheckpointCallback) -> None:
        """Call ``callback(projection, checkpoint)`` whenever a process commits a batch of a
        projection's active copy (or switches copies). Returns once listening, after one
        call per projection with its stored checkpoint. Runs until ``close``."""
        self._check_open()
        await self._watcher.add(callback)

    async def _active_checkpoints(self) -> dict[str, int]:
        return {state.name: state.checkpoint for state in await self.states()}

    def rejects(self, error: BaseException) -> bool:
        # SQLSTATE class 22 (data exception: a NUL in text, a number out of range...) and
        # 54 (a program limit: an index row too large); a document that is not JSON.
        return isinstance(
            error, psycopg.DataError | psycopg.errors.ProgramLimitExceeded | msgspec.EncodeError
        )

    # -- bookkeeping ----------------------------------------------------------------------

    async def prepare(self, projection: str, collections: Sequence[Collection]) -> ProjectionState:
        self.views.register(projection, collections)
        await self._admin.run(ops.prepare, self._schema, projection, tuple(collections))
        return await self.state(projection)

    async def _fetch(self, query: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._check_open()
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query, args)
            return await cursor.fetchall()

    async def state(self, projection: str) -> ProjectionState:
        rows = await self._fetch(self._q_states + " WHERE p.name = %s", (projection,))
        if not rows:
            raise UnknownProjectionError(projection, self.views.projections())
        return _state(rows[0])

    async def states(self) -> list[ProjectionState]:
        return [_state(row) for row in await self._fetch(self._q_states + " ORDER BY p.name")]

    async def set_status(
        self,
        projection: str,
        status: ProjectionStatus,
        error: str | None = None,
        *,
        attempts: int = 0,
    ) -> None:
        await self._lane(projection).run(
            ops.set_status, self._schema, projection, status, error, attempts
        )

    async def set_paused(self, projection: str, paused: bool) -> None:
        # On the admin lane: the CLI pauses from a process that runs nothing.
        if not await self._admin.run(ops.set_paused, self._schema, projection, paused):
            raise UnknownProjectionError(projection, self.views.projections())

    async def read_copy(self, projection: str, generation: int | None = None) -> ViewCopy:
        self._check_open()
        s = f'"{self._schema}"'
        async with self._pool.connection() as conn, conn.transaction():
            # One snapshot: the documents are exactly those at the checkpoint read with them.
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if generation is None:
                cursor = await conn.execute(
                    f"SELECT generation FROM {s}.projections WHERE name = %s", (projection,)
                )
                row = await cursor.fetchone()
                if row is None:
                    raise UnknownProjectionError(projection, self.views.projections())
                generation = int(row[0])
            cursor = await conn.execute(self._q_checkpoint, (projection, generation))
            found = await cursor.fetchone()
            if found is None:
                raise GenerationChangedError(projection, generation)
            documents: dict[str, dict[str, Document]] = {}
            for collection in self.views.collections(projection):
                table = collection_table(self._schema, collection.name, generation)
                cursor = await conn.execute(f"SELECT key, doc::text FROM {table}")
                documents[collection.name] = {
                    key: decode_document(text) for key, text in await cursor.fetchall()
                }
        return ViewCopy(projection, generation, int(found[0]), documents)

    async def drop_copy(self, projection: str, generation: int) -> None:
        await self._lane(projection).run(ops.drop_copy, self.views, projection, generation)

    async def bind_event_store(self, projection: str, generation: int, identity: str) -> str:
        # On the admin lane: every process binds at start, most without running anything.
        return await self._admin.run(
            ops.bind_event_store, self._schema, projection, generation, identity
        )

    async def checkpoint(self, projection: str, generation: int) -> int:
        rows = await self._fetch(self._q_checkpoint, (projection, generation))
        if not rows:
            raise GenerationChangedError(projection, generation)
        return int(rows[0][0])

    # -- writing --------------------------------------------------------------------------

    async def commit_batch(
        self,
        projection: str,
        generation: int,
        apply: ApplyBatch,
        *,
        checkpoint: int,
        last_event_at: datetime | None,
        parked: Sequence[tuple[RecordedEvent, str]] = (),
    ) -> None:
        active = await self._lane(projection).run(
            ops.commit_batch,
            self.views,
            projection,
            generation,
            apply,
            checkpoint,
            last_event_at,
            parked,
        )
        if active:
            self._notifier.poke(projection, checkpoint)

    async def begin_rebuild(self, projection: str, collections: Sequence[Collection]) -> int:
        self.views.register(projection, collections)
        return await self._lane(projection).run(
            ops.begin_rebuild, self.views, projection, tuple(collections)
        )

    async def switch(self, projection: str, generation: int) -> None:
        checkpoint = await self._lane(projection).run(
            ops.switch, self.views, projection, generation
        )
        self._notifier.poke(projection, checkpoint)

    async def reset(self, projection: str, collections: Sequence[Collection]) -> None:
        generation = await self.begin_rebuild(projection, collections)
        await self.switch(projection, generation)

    # -- dead letters ---------------------------------------------------------------------

    async def dead_letters(self, projection: str, generation: int) -> list[DeadLetter]:
        rows = await self._fetch(self._q_dead_letters, (projection, generation))
        return [
            DeadLetter(
                projection=projection,
                position=row[0],
                stream_id=row[1],
                error=row[2],
                parked_at=row[3],
                record=ops.decode_record(row[4]),
            )
            for row in rows
        ]

    async def release_dead_letters(
        self, projection: str, generation: int, apply: ApplyBatch, positions: Sequence[int]
    ) -> None:
        await self._lane(projection).run(
            ops.release_dead_letters, self.views, projection, generation, apply, tuple(positions)
        )

    # -- reading --------------------------------------------------------------------------

    async def get(self, collection: str, key: str) -> Document | None:
        text = await self._get_text(collection, key)
        return None if text is None else decode_document(text)

    async def get_json(self, collection: str, key: str) -> bytes | None:
        # jsonb's own text form: the same document, keys in jsonb's order.
        text = await self._get_text(collection, key)
        return None if text is None else text.encode()

    async def _get_text(self, collection: str, key: str) -> str | None:
        query = self.views.get_sql(collection)
        self._check_open()
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query, (key,), prepare=True)
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def find(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
        order_by: Sequence[SortBy] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Document]:
        query, args = self.views.select_sql(
            collection, "doc::text", where, between, order_by, limit, offset
        )
        return [decode_document(row[0]) for row in await self._fetch(query, args)]

    async def count(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> int:
        query, args = self.views.select_sql(collection, "count(*)", where, between, (), None, 0)
        rows = await self._fetch(query, args)
        return int(rows[0][0])

    # -- closing --------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        await self._notifier.close()
        self._closed = True
        await self._watcher.close()
        for lane in [*self._lanes.values(), self._admin]:
            await lane.close()
        self._lanes.clear()
        self._leased.clear()  # a lease's lane belongs to the lease, which closes it
        await self._pool.close()


def _state(row: tuple[Any, ...]) -> ProjectionState:
    return ProjectionState(
        name=row[0],
        generation=row[1],
        checkpoint=int(row[2]),
        status=ProjectionStatus(row[3]),
        error=row[4],
        updated_at=row[5],
        last_event_at=row[6],
        attempts=row[7],
        event_store=row[8],
        parked=int(row[9]),
        paused=bool(row[10]),
        revision=int(row[11]),
    )

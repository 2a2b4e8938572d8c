"""The ReadStore on PostgreSQL: what it does beyond the contract (tests/contract runs
``ReadStoreContract`` on it and on SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from twofold.adapters.postgres.read_store import PostgresReadStore
from twofold.application.views import Collection, ViewTransaction
from twofold.errors import GenerationChangedError, QueryError
from twofold.testing.read_store_contract import NOTES, ORDERS, T0, order, put_orders

# -- PostgreSQL's own -------------------------------------------------------------------------


@pytest.fixture
async def views(postgres_url: str, pg_schema: str) -> AsyncIterator[PostgresReadStore]:
    store = await PostgresReadStore.open(postgres_url, schema=pg_schema)
    yield store
    await store.close()


@pytest.mark.postgres
async def test_a_batch_at_or_below_the_stored_checkpoint_writes_nothing(
    views: PostgresReadStore,
) -> None:
    # Two writers of one projection (which leases prevent): the later batch must not land.
    await views.prepare("shop", [ORDERS])
    await views.commit_batch(
        "shop", 1, put_orders(("a", order("new", 1, 1))), checkpoint=5, last_event_at=T0
    )
    with pytest.raises(GenerationChangedError):
        await views.commit_batch(
            "shop", 1, put_orders(("a", order("late", 1, 1))), checkpoint=5, last_event_at=T0
        )
    assert (await views.get("orders", "a") or {})["status"] == "new"


@pytest.mark.postgres
async def test_index_values_of_another_type_are_not_indexed(views: PostgresReadStore) -> None:
    await views.prepare("shop", [ORDERS])
    odd = {"status": 7, "total": "a lot", "lines": 2.0, "deep": {"x": [1, "two", None]}}
    await views.commit_batch("shop", 1, put_orders(("a", odd)), checkpoint=1, last_event_at=T0)
    assert await views.get("orders", "a") == odd  # the document itself is kept as given
    assert await views.count("orders", where={"lines": 2}) == 1  # integral float: indexed
    assert await views.count("orders", between={"total": (-1e9, 1e9)}) == 0
    with pytest.raises(QueryError, match="indexed as str"):
        await views.count("orders", where={"status": 7})


@pytest.mark.postgres
async def test_an_index_declared_later_is_added_and_filled(views: PostgresReadStore) -> None:
    await views.prepare("shop", [NOTES])
    docs: list[tuple[str, dict[str, Any]]] = [
        ("a", {"topic": "x", "n": 1}),
        ("b", {"topic": "y", "n": 2.5}),
        ("c", {"n": "3"}),
    ]

    def apply(tx: ViewTransaction) -> None:
        for key, doc in docs:
            tx.put("notes", key, doc)

    await views.commit_batch("shop", 1, apply, checkpoint=1, last_event_at=T0)
    wider = Collection("notes", indexes={"topic": str, "n": int})
    other = await PostgresReadStore.open(views.url, schema=views.schema)
    try:
        await other.prepare("shop", [wider])
        assert [d["topic"] for d in await other.find("notes", where={"topic": "y"})] == ["y"]
        assert await other.count("notes", where={"n": 1}) == 1
        assert await other.count("notes", between={"n": (-100, 100)}) == 1  # 2.5, "3": NULL
    finally:
        await other.close()


@pytest.mark.postgres
async def test_checkpoints_reach_watchers_in_other_processes(
    views: PostgresReadStore, postgres_url: str, pg_schema: str
) -> None:
    await views.prepare("shop", [ORDERS])
    await views.commit_batch("shop", 1, put_orders(), checkpoint=3, last_event_at=T0)
    watcher = await PostgresReadStore.open(postgres_url, schema=pg_schema)
    heard: list[tuple[str, int]] = []
    arrived = asyncio.Event()

    def on_checkpoint(projection: str, position: int) -> None:
        heard.append((projection, position))
        if position >= 12:
            arrived.set()

    try:
        await watcher.watch_checkpoints(on_checkpoint)
        assert heard == [("shop", 3)], "the stored checkpoint comes first"
        for checkpoint in (4, 9, 12):
            await views.commit_batch(
                "shop", 1, put_orders(), checkpoint=checkpoint, last_event_at=T0
            )
        await asyncio.wait_for(arrived.wait(), 5)
        assert heard[-1] == ("shop", 12)
        assert [p for _, p in heard] == sorted(p for _, p in heard)
    finally:
        await watcher.close()


@pytest.mark.postgres
async def test_switch_replaces_the_view_while_readers_read(
    views: PostgresReadStore,
) -> None:
    await views.prepare("shop", [ORDERS])
    await views.commit_batch(
        "shop", 1, put_orders(("a", order("g1", 1, 1))), checkpoint=1, last_event_at=T0
    )
    seen: set[str] = set()
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            found = await views.get("orders", "a")
            assert found is not None, "a reader never sees an empty or missing view"
            seen.add(found["status"])

    readers = [asyncio.create_task(reader()) for _ in range(3)]
    for n in range(2, 6):
        generation = await views.begin_rebuild("shop", [ORDERS])
        await views.commit_batch(
            "shop", generation, put_orders(("a", order(f"g{n}", 1, 1))), checkpoint=1,
            last_event_at=T0,
        )  # fmt: skip
        await views.switch("shop", generation)
    done.set()
    await asyncio.gather(*readers)
    assert (await views.get("orders", "a") or {})["status"] == "g5"
    with psycopg.connect(views.url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE 'v\\_%%'",
            (views.schema,),
        ).fetchone()
    assert tables == (1,), "old generations are dropped"


async def test_a_process_waiting_for_a_lease_holds_no_connection_for_it(
    views: PostgresReadStore, postgres_url: str, pg_schema: str
) -> None:
    def lease_connections(name: str) -> int:
        with psycopg.connect(postgres_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchone()
        assert row is not None
        return int(row[0])

    lease = views.lease("orders")
    other = views.lease("orders")  # another process's, for the test: its own connection
    assert not await views.lease_taken(lease)
    assert await other.try_acquire()
    try:
        assert await views.lease_taken(lease)
        # Tried anyway (a race a look cannot rule out): refused, and its connection let go.
        assert not await lease.try_acquire()
        # Only the holder's is left (the server ends a closed session a moment later).
        for _ in range(3000):  # 30 s at most: a guard against hanging, not a limit
            if lease_connections(lease.lane.application_name) == 1:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the refused try kept its connection")
    finally:
        await other.release()
    # The server ends the closed session (and frees its lock) a moment later.
    for _ in range(3000):  # 30 s at most, as above
        if not await views.lease_taken(lease):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the released lease still looks taken after 30 s")
    assert await lease.try_acquire()
    assert await views.lease_taken(lease)
    await lease.release()


@pytest.mark.postgres
async def test_bookkeeping_of_an_earlier_twofold_is_migrated(
    postgres_url: str, pg_schema: str
) -> None:
    store = await PostgresReadStore.open(postgres_url, schema=pg_schema)
    await store.prepare("shop", [NOTES])
    await store.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # back to migration 1
        conn.execute(f'ALTER TABLE "{pg_schema}".projections DROP COLUMN attempts')
        conn.execute(f'ALTER TABLE "{pg_schema}".checkpoints DROP COLUMN event_store')
        conn.execute(f'ALTER TABLE "{pg_schema}".projections DROP COLUMN paused')
        conn.execute(f'ALTER TABLE "{pg_schema}".projections DROP COLUMN revision')
        conn.execute(f'DELETE FROM "{pg_schema}".view_migrations WHERE version > 1')
    store = await PostgresReadStore.open(postgres_url, schema=pg_schema)
    try:
        state = await store.state("shop")
        assert (state.attempts, state.event_store, state.parked) == (0, None, 0)
        assert (state.paused, state.revision) == (False, 0)
        assert await store.bind_event_store("shop", 1, "store-a") == "store-a"
    finally:
        await store.close()

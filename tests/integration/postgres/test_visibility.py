"""Promise 4 on PostgreSQL: once a reader has seen position p, nothing below p appears later.

Positions come from a sequence and transactions commit in any order, so these tests hold
transactions open on purpose, at lower positions than ones already committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.unit import bank
from twofold.adapters.postgres import PostgresEventStore
from twofold.adapters.postgres._horizon import announcement
from twofold.adapters.postgres.append.sql import check_result, encode_append, statements
from twofold.adapters.postgres.append.units import _INSERT as units_insert
from twofold.adapters.postgres.migrations import migrate
from twofold.application.app import Service
from twofold.application.views import ViewTransaction
from twofold.bootstrap import bootstrap
from twofold.examples import shop
from twofold.records import ANY, NO_STREAM, NewEvent, RecordedEvent, uuid7
from twofold.settings import Settings

from ._raw_writer import append_params, append_query
from .conftest import drop_schema

pytestmark = pytest.mark.postgres

RAW_WRITER = Path(__file__).with_name("_raw_writer.py")


def new_events(count: int = 1) -> list[NewEvent]:
    return [NewEvent(event_id=uuid7(), type="Fast") for _ in range(count)]


async def test_read_all_stops_below_a_position_still_in_flight(
    postgres_url: str, pg_schema: str
) -> None:
    writer = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    reader = await PostgresEventStore.open(postgres_url, schema=pg_schema, visibility_wait=0.05)
    slow = await psycopg.AsyncConnection.connect(postgres_url)
    try:
        await slow.execute(append_query(pg_schema), append_params("slow", 1)[1])
        fast = await writer.append("fast", new_events(), expected_version=NO_STREAM)
        assert fast.position == 2

        assert await reader.read_all() == []
        assert await reader.head_position() == 0

        await slow.commit()
        assert [e.position for e in await reader.read_all()] == [1, 2]
        assert await reader.head_position() == 2
    finally:
        await slow.close()
        await writer.close()
        await reader.close()


async def test_read_all_waits_for_a_writer_whose_xid_is_above_the_snapshot_xmax(
    postgres_url: str, pg_schema: str
) -> None:
    # The hole in "wait until xmin >= the snapshot's xmax": xmax is the latest *completed*
    # xid + 1, so a running writer whose xid is newer than every completed one is not in
    # the snapshot's list. Here the committed writer took its xid first and its position
    # last, so nothing newer than the slow writer's xid has completed.
    store = await PostgresEventStore.open(postgres_url, schema=pg_schema, visibility_wait=0.05)
    early = await psycopg.AsyncConnection.connect(postgres_url)
    slow = await psycopg.AsyncConnection.connect(postgres_url)
    try:
        await early.execute("SELECT pg_current_xact_id()")
        await slow.execute(append_query(pg_schema), append_params("slow", 1)[1])
        await early.execute(append_query(pg_schema), append_params("early", 1)[1])
        await early.commit()

        assert await store.read_all() == []

        await slow.commit()
        assert [e.stream_id for e in await store.read_all()] == ["slow", "early"]
    finally:
        await early.close()
        await slow.close()
        await store.close()


@contextlib.asynccontextmanager
async def unrelated_transaction(kind: str, url: str, schema: str) -> AsyncIterator[None]:
    """A transaction that holds an xid but appends no event to ``schema``, open throughout
    (a long batch job, a migration, a session left in a transaction)."""
    other_schema = f"{schema}_other"
    if kind == "another database":
        conn = await psycopg.AsyncConnection.connect(make_conninfo(url, dbname="postgres"))
        await conn.execute("SELECT pg_current_xact_id()")
    elif kind == "same database, no event":
        conn = await psycopg.AsyncConnection.connect(url)
        await conn.execute(
            f'INSERT INTO "{schema}".snapshots'
            " (stream_id, aggregate_type, version, schema_version, state)"
            " VALUES ('batch-job', 'Job', 1, 1, '')"
        )
    else:
        assert kind == "appending to another schema"
        conn = await psycopg.AsyncConnection.connect(url)
        await migrate(conn, other_schema)
        await conn.execute(append_query(other_schema), append_params("elsewhere", 1)[1])
    try:
        cur = await conn.execute("SELECT pg_current_xact_id_if_assigned()")
        row = await cur.fetchone()
        assert row is not None and row[0] is not None, "the transaction holds an xid"
        yield
    finally:
        await conn.rollback()
        await conn.close()
        drop_schema(url, other_schema)


@pytest.mark.parametrize(
    "kind", ["another database", "same database, no event", "appending to another schema"]
)
async def test_readers_do_not_wait_for_a_transaction_that_appends_nothing_to_their_schema(
    postgres_url: str, pg_schema: str, kind: str
) -> None:
    # Only appenders to this schema announce themselves, and only they hold readers back.
    store = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    try:
        async with unrelated_transaction(kind, postgres_url, pg_schema):
            first = await store.append("s", new_events(), expected_version=NO_STREAM)
            assert [e.position for e in await store.read_all()] == [first.position]
            second = await store.append("s", new_events(2), expected_version=1)
            assert await store.head_position() == second.position
            events = await store.read_all(after=first.position)
            assert [e.stream_version for e in events] == [2, 3]
    finally:
        await store.close()


async def test_a_client_reads_its_writes_while_another_database_holds_a_transaction_open(
    postgres_url: str, pg_schema: str
) -> None:
    # The report: such a transaction held every read-your-writes query until it ended.
    url = f"{postgres_url}?schema={pg_schema}"
    settings = Settings(event_store=url, read_store=url)
    async with unrelated_transaction("another database", postgres_url, pg_schema):
        app = await bootstrap(shop.SERVICE, settings)
        async with app:
            for i in range(20):
                result = await app.dispatch(
                    shop.CreateUser(user_id=f"u-{i}", email=f"u{i}@example.com", name=f"U {i}")
                )
                # The timeout only keeps a broken run from hanging.
                user = await app.ask(
                    shop.GetUser(user_id=f"u-{i}"), min_position=result.position, timeout=60
                )
                assert user is not None and user.name == f"U {i}"


def hold_an_append(url: str, schema: str, statement: str) -> tuple[psycopg.Connection[Any], int]:
    """A connection whose open transaction took positions through ``statement``, the way
    the store's writer sends it (``_single``), or through ``append_batch()``; and how many."""
    conn = psycopg.connect(url)
    if statement == "append_batch":
        conn.execute(append_query(schema), append_params("slow", 2)[1])
        return conn, 2
    if statement == "append_streams":  # _units: several streams in one statement
        ids = [uuid.uuid4(), uuid.uuid4()]
        seq = sql.Literal(f"{schema}.event_position")
        insert = sql.SQL(units_insert).format(
            s=sql.Identifier(schema), seq=seq, announce=announcement(sql.Identifier(schema))
        )
        conn.execute(
            insert,
            (ids, ["slow", "slow"], [1, 2], ["Held", "Held"], [1, 1], [b"{}", b"{}"],
             [b"{}", b"{}"], ["slow"], [0]),
        )  # fmt: skip
        return conn, 2
    pg = conn.pgconn
    for name, query, oids in statements(sql.Identifier(schema), conn):
        check_result(conn, pg.prepare(name, query, oids))
    check_result(conn, pg.exec_(b"BEGIN"))
    events = new_events(2 if statement == "many" else 1)
    name, params, formats = encode_append("slow", events, 0, known=statement == "known")
    assert name.decode() == f"twofold_append_{statement}"
    result = pg.exec_prepared(name, params, formats, 1)
    check_result(conn, result)
    assert result.ntuples == len(events)
    return conn, len(events)


@pytest.mark.parametrize("statement", ["one", "known", "many", "append_batch", "append_streams"])
async def test_an_open_append_holds_readers_back_whichever_statement_took_its_position(
    postgres_url: str, pg_schema: str, statement: str
) -> None:
    # Every statement that takes a position announces its transaction first.
    writer = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    reader = await PostgresEventStore.open(postgres_url, schema=pg_schema, visibility_wait=0.05)
    slow, held = hold_an_append(postgres_url, pg_schema, statement)
    try:
        fast = await writer.append("fast", new_events(), expected_version=NO_STREAM)
        assert fast.position == held + 1

        assert await reader.read_all() == []
        assert await reader.head_position() == 0

        check_result(slow, slow.pgconn.exec_(b"COMMIT"))
        events = await reader.read_all()
        assert [e.stream_id for e in events] == ["slow"] * held + ["fast"]
        assert [e.position for e in events] == list(range(1, held + 2))
    finally:
        slow.close()
        await writer.close()
        await reader.close()


class HeldBalances(bank.Balances):
    """The bank's balances, whose handler holds its batch's transaction open on a deposit of
    42 (inline, on the writer's thread) until ``release`` is set."""

    inside = threading.Event()
    release = threading.Event()

    def _deposited(self, event: bank.MoneyDeposited, tx: ViewTransaction) -> None:
        if event.amount == 42:
            HeldBalances.inside.set()
            assert HeldBalances.release.wait(60), "the test never released the batch"
        super()._deposited(event, tx)


async def test_an_inline_batch_in_flight_holds_readers_back(
    postgres_url: str, pg_schema: str
) -> None:
    # A projection applied inline keeps its batch's transaction open after the insert, so
    # a later append can commit first; the batch announced itself like any other append.
    HeldBalances.inside.clear()
    HeldBalances.release.clear()
    url = f"{postgres_url}?schema={pg_schema}"
    settings = Settings.from_env(
        {"TWOFOLD_EVENT_STORE": url, "TWOFOLD_READ_STORE": url, "TWOFOLD_INLINE_PROJECTIONS": "*"}
    )
    app = await bootstrap(
        Service(name="bank", register=bank.register, projections=(HeldBalances,)), settings
    )
    reader = await PostgresEventStore.open(postgres_url, schema=pg_schema, visibility_wait=0.05)
    other = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    try:
        async with app:
            opened = await app.dispatch(bank.OpenAccount(account_id="a", owner="Ann"))
            held = asyncio.create_task(
                app.dispatch(bank.Deposit(account_id="a", amount=Decimal(42)))
            )
            try:
                assert await asyncio.to_thread(HeldBalances.inside.wait, 60)
                later = await other.append("elsewhere", new_events(), expected_version=NO_STREAM)

                assert await reader.read_all(after=opened.position) == []
            finally:
                HeldBalances.release.set()
                deposited = await held
            events = await reader.read_all(after=opened.position)
            assert [e.position for e in events] == [deposited.position, later.position]
            assert deposited.position < later.position
    finally:
        await other.close()
        await reader.close()


async def test_subscription_yields_a_late_commit_before_the_positions_after_it(
    postgres_url: str, pg_schema: str
) -> None:
    writer = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    reader = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    slow = await psycopg.AsyncConnection.connect(postgres_url)
    seen: list[int] = []

    async def follow() -> None:
        async for event in reader.subscribe():
            seen.append(event.position)
            if len(seen) == 2:
                return

    try:
        following = asyncio.create_task(follow())
        await slow.execute(append_query(pg_schema), append_params("slow", 1)[1])
        await writer.append("fast", new_events(), expected_version=NO_STREAM)
        await slow.commit()
        await asyncio.wait_for(following, 30)
        assert seen == [1, 2]
    finally:
        await slow.close()
        await writer.close()
        await reader.close()


@pytest.mark.slow
async def test_readers_see_every_commit_once_in_order_under_concurrent_writers(
    postgres_url: str, pg_schema: str
) -> None:
    """Writers in three shapes run at once, readers follow them, and every reader must
    end up with exactly the committed log, in position order:

    - writer processes and in-process connections that sleep inside their transactions
      and sometimes roll back (gaps);
    - an "inverter" that holds a low position until a higher one has committed, so commits
      out of position order are certain, not just likely;
    - two stores whose tasks append concurrently (group commit).
    """
    rnd = random.Random(20240601)
    stores = [await PostgresEventStore.open(postgres_url, schema=pg_schema) for _ in range(7)]
    writer_stores, reader_stores, subscriber_stores = stores[:2], stores[2:5], stores[5:]
    committed: set[str] = set()
    writers_done = asyncio.Event()
    final: list[int] = []

    async def raw_process(seed: int) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(RAW_WRITER),
            postgres_url,
            pg_schema,
            "60",
            str(seed),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        committed.update(json.loads(out))

    async def raw_connection(seed: int) -> None:
        local = random.Random(seed)
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            for _ in range(60):
                ids, params = append_params(f"conn-{seed}", local.randint(1, 3))
                await conn.execute(append_query(pg_schema), params)
                await asyncio.sleep(local.random() * 0.004)
                if local.random() < 0.1:
                    await conn.rollback()
                else:
                    await conn.commit()
                    committed.update(str(i) for i in ids)

    async def inverter() -> None:
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            for _ in range(10):
                ids, params = append_params("inverter", 1)
                cur = await conn.execute(append_query(pg_schema), params)
                row = await cur.fetchone()
                assert row is not None
                mine = row[2][0]
                async with await psycopg.AsyncConnection.connect(
                    postgres_url, autocommit=True
                ) as probe:
                    while True:
                        cur = await probe.execute(
                            f'SELECT count(*) FROM "{pg_schema}".events WHERE position > %s',
                            (mine,),
                        )
                        above = await cur.fetchone()
                        if above is not None and above[0] > 0:
                            break
                        await asyncio.sleep(0.001)
                await conn.commit()
                committed.update(str(i) for i in ids)

    async def store_writer(store: PostgresEventStore, seed: int) -> None:
        local = random.Random(seed)
        for _ in range(40):
            events = new_events(local.randint(1, 3))
            await store.append(f"store-{seed}", events, expected_version=ANY)
            committed.update(str(e.event_id) for e in events)

    async def reader(store: PostgresEventStore, seen: list[RecordedEvent]) -> None:
        position = 0
        while not (writers_done.is_set() and final and position >= final[-1]):
            page = await store.read_all(after=position, limit=rnd.randint(1, 40))
            seen.extend(page)
            if page:
                position = page[-1].position
            else:
                await asyncio.sleep(0.002)

    async def subscriber(store: PostgresEventStore, seen: list[RecordedEvent]) -> None:
        async for event in store.subscribe():
            seen.append(event)

    reads: list[list[RecordedEvent]] = [[] for _ in reader_stores]
    subs: list[list[RecordedEvent]] = [[] for _ in subscriber_stores]
    readers = [
        asyncio.create_task(reader(s, seen)) for s, seen in zip(reader_stores, reads, strict=True)
    ]
    subscribers = [
        asyncio.create_task(subscriber(s, seen))
        for s, seen in zip(subscriber_stores, subs, strict=True)
    ]
    try:
        await asyncio.gather(
            *(raw_process(seed) for seed in range(3)),
            *(raw_connection(seed) for seed in range(10, 14)),
            inverter(),
            *(store_writer(s, seed) for s in writer_stores for seed in range(20, 26)),
        )
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            cur = await conn.execute(
                f'SELECT position, event_id FROM "{pg_schema}".events ORDER BY position'
            )
            rows = await cur.fetchall()
        final.extend(position for position, _ in rows)
        writers_done.set()
        await asyncio.wait_for(asyncio.gather(*readers), 60)

        for _ in range(6000):  # at most a minute: a guard against hanging, not a limit
            if all(seen and seen[-1].position >= final[-1] for seen in subs):
                break
            await asyncio.sleep(0.01)
    finally:
        for task in [*readers, *subscribers]:
            task.cancel()
        await asyncio.gather(*readers, *subscribers, return_exceptions=True)
        for store in stores:
            await store.close()

    assert {str(event_id) for _, event_id in rows} == committed
    assert len(final) > 1000
    for seen in [*reads, *subs]:
        assert [e.position for e in seen] == final

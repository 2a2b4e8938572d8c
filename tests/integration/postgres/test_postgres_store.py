"""What the PostgreSQL store adds to the shared contract: group commit, several processes
on one schema, notifications, migrations, reconnecting."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from twofold.adapters.postgres import (
    MIGRATIONS,
    PostgresEventStore,
    PostgresIdempotencyStore,
    migrate,
    open_postgres_event_store,
    split_schema,
)
from twofold.adapters.postgres.append.writer import WriterState
from twofold.errors import (
    ConcurrencyError,
    ConfigurationError,
    DuplicateEventError,
    EventStoreError,
)
from twofold.records import ANY, NO_STREAM, NewEvent, RecordedEvent, uuid7

pytestmark = pytest.mark.postgres


def one(type_: str = "Happened", data: bytes = b"{}") -> list[NewEvent]:
    return [NewEvent(event_id=uuid7(), type=type_, data=data)]


async def transactions(url: str, schema: str) -> int:
    """How many transactions wrote the log (xmin is the writing transaction's id)."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT count(DISTINCT xmin::text) FROM {}.events").format(
                sql.Identifier(schema)
            )
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_concurrent_appends_share_one_transaction(
    store: PostgresEventStore, postgres_url: str, pg_schema: str
) -> None:
    results = await asyncio.gather(
        *(store.append(f"s-{i}", one(), expected_version=NO_STREAM) for i in range(50))
    )
    assert sorted(r.position for r in results) == list(range(1, 51))
    assert await transactions(postgres_url, pg_schema) == 1


async def test_a_burst_after_a_quiet_spell_takes_one_transaction(
    store: PostgresEventStore, postgres_url: str, pg_schema: str
) -> None:
    await store.append("warm", one(), expected_version=NO_STREAM)  # the writer's lane is open
    results = await asyncio.gather(
        *(store.append(f"s-{i}", one(), expected_version=NO_STREAM) for i in range(50))
    )
    assert sorted(r.position for r in results) == list(range(2, 52))
    # The first append waits for the end of its loop turn, where the other 49 join it: one
    # pipelined batch, one commit.
    assert await transactions(postgres_url, pg_schema) - 1 == 1


async def test_appends_of_several_events_share_a_pipelined_batch_in_order(
    store: PostgresEventStore, postgres_url: str, pg_schema: str
) -> None:
    three = [NewEvent(event_id=uuid7(), type="M", data=b'{"n": %d}' % n) for n in range(3)]
    two = [NewEvent(event_id=uuid7(), type="N") for _ in range(2)]
    m, n, o = await asyncio.gather(
        store.append("m", three, expected_version=NO_STREAM),
        store.append("n", two, expected_version=NO_STREAM),
        store.append("o", one(), expected_version=NO_STREAM),
    )
    # Positions follow the order the appends were made, each append's events together.
    assert [e.position for e in m.events + n.events + o.events] == [1, 2, 3, 4, 5, 6]
    assert [e.stream_version for e in m.events] == [1, 2, 3] and n.version == 2
    assert list(m.events + n.events + o.events) == await store.read_all(limit=10)
    assert await transactions(postgres_url, pg_schema) == 1


async def test_a_mismatch_in_a_pipelined_batch_leaves_the_others_written(
    store: PostgresEventStore, postgres_url: str, pg_schema: str
) -> None:
    other = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    try:
        await other.append("elsewhere", one(), expected_version=NO_STREAM)
    finally:
        await other.close()
    outcomes = await asyncio.gather(
        store.append("a", one(), expected_version=NO_STREAM),
        # Not a version this store saw: the statement reads the stream, finds 1, writes
        # nothing, and the rest of the pipeline goes on.
        store.append("elsewhere", one(), expected_version=3),
        store.append("b", one(), expected_version=NO_STREAM),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], ConcurrencyError)
    assert (outcomes[1].expected, outcomes[1].actual) == (3, 1)
    assert [o.version for o in outcomes if not isinstance(o, BaseException)] == [1, 1]
    assert await store.stream_version("elsewhere") == 1
    # The other store's append, then one transaction for the batch.
    assert await transactions(postgres_url, pg_schema) == 2


async def test_an_append_cancelled_in_flight_leaves_the_store_working(
    store: PostgresEventStore,
) -> None:
    await store.append("warm", one(), expected_version=NO_STREAM)
    task = asyncio.create_task(store.append("gone", one(), expected_version=NO_STREAM))
    await asyncio.sleep(0)  # sent on the writer's lane, not yet answered
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The next append waits for the one in flight, and is written after it.
    result = await store.append("after", one(), expected_version=NO_STREAM)
    assert result.version == 1
    # Whether or not the cancelled append was stored, the stream is consistent.
    version = await store.stream_version("gone")
    assert version in (0, 1)
    again = await store.append("gone", one(), expected_version=version)
    assert again.version == version + 1


async def test_a_stale_append_fails_alone_in_its_batch(
    store: PostgresEventStore, postgres_url: str, pg_schema: str
) -> None:
    await store.append("taken", one(), expected_version=NO_STREAM)
    outcomes = await asyncio.gather(
        store.append("a", one(), expected_version=NO_STREAM),
        store.append("taken", one(), expected_version=NO_STREAM),
        store.append("taken", one(), expected_version=1),
        store.append("b", one(), expected_version=NO_STREAM),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], ConcurrencyError)
    assert (outcomes[1].expected, outcomes[1].actual) == ("no_stream", 1)
    assert [o.version for o in outcomes if not isinstance(o, BaseException)] == [1, 2, 1]
    assert await store.stream_version("taken") == 2
    assert await transactions(postgres_url, pg_schema) == 2


async def test_appends_to_one_stream_in_one_batch_chain_their_versions(
    store: PostgresEventStore,
) -> None:
    results = await asyncio.gather(
        *(store.append("chain", one(), expected_version=ANY) for _ in range(5)),
        store.append("chain", one(), expected_version=5),
    )
    assert [r.version for r in results] == [1, 2, 3, 4, 5, 6]


async def test_a_retry_racing_its_original_is_settled_with_the_original_result(
    store: PostgresEventStore,
) -> None:
    events = one()
    first, second = await asyncio.gather(
        store.append("race", events, expected_version=NO_STREAM),
        store.append("race", events, expected_version=NO_STREAM),
    )
    assert first == second
    assert len(await store.read_stream("race")) == 1


async def test_an_event_id_stored_in_another_stream_fails_only_that_append(
    store: PostgresEventStore,
) -> None:
    events = one()
    await store.append("owner", events, expected_version=NO_STREAM)
    outcomes = await asyncio.gather(
        store.append("thief", events, expected_version=ANY),
        store.append("bystander", one(), expected_version=ANY),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], DuplicateEventError)
    assert not isinstance(outcomes[1], BaseException)


async def test_text_postgres_cannot_store_is_refused_before_the_batch(
    store: PostgresEventStore,
) -> None:
    with pytest.raises(ValueError, match="NUL"):
        await store.append("bad\x00id", one(), expected_version=ANY)
    with pytest.raises(ValueError, match="NUL"):
        await store.append("ok", one(type_="Bad\x00Type"), expected_version=ANY)
    assert await store.head_position() == 0


async def test_two_stores_racing_on_one_stream_let_exactly_one_win(
    postgres_url: str, pg_schema: str
) -> None:
    stores = [await PostgresEventStore.open(postgres_url, schema=pg_schema) for _ in range(4)]
    try:
        for round_ in range(10):
            outcomes = await asyncio.gather(
                *(s.append("contested", one(), expected_version=round_) for s in stores),
                return_exceptions=True,
            )
            winners = [o for o in outcomes if not isinstance(o, BaseException)]
            assert len(winners) == 1
            assert all(isinstance(o, ConcurrencyError) for o in outcomes if o not in winners)
        assert await stores[0].stream_version("contested") == 10
    finally:
        for s in stores:
            await s.close()


async def quiet(store: PostgresEventStore) -> None:
    """Wait until the writer is idle, so the next append is sent at once by its caller (the
    path with ``sql._KNOWN``), not queued for the writer task."""
    writer = store._writer
    for _ in range(3000):  # 30 s at most: a guard against hanging, not a limit
        if writer.state is WriterState.IDLE and writer._direct.idle:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the writer did not go idle")


async def test_a_stream_known_here_but_moved_elsewhere_is_a_conflict_not_a_gap(
    postgres_url: str, pg_schema: str
) -> None:
    # ``here`` wrote version 1 itself, so it appends at version 1 without reading the stream
    # (_single._KNOWN); the unique index must still refuse it once ``there`` took version 2,
    # and the refusal must be a ConcurrencyError that names the stream's real version.
    here = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    there = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    try:
        await here.append("s", one(), expected_version=NO_STREAM)
        await there.append("s", one(), expected_version=1)
        await quiet(here)
        with pytest.raises(ConcurrencyError) as raised:
            await here.append("s", one(), expected_version=1)
        assert raised.value.actual == 2
        await quiet(here)
        with pytest.raises(ConcurrencyError):
            await here.append("s", one(), expected_version=NO_STREAM)
        await quiet(here)
        # After the refusal it appends at the real version as usual.
        assert (await here.append("s", one(), expected_version=2)).version == 3
        versions = [e.stream_version for e in await there.read_stream("s")]
        assert versions == [1, 2, 3]
    finally:
        await here.close()
        await there.close()


async def test_an_expected_version_ahead_of_the_stream_never_leaves_a_gap(
    store: PostgresEventStore,
) -> None:
    await store.append("s", one(), expected_version=NO_STREAM)
    for ahead in (2, 5):
        await quiet(store)
        with pytest.raises(ConcurrencyError):
            await store.append("s", one(), expected_version=ahead)
    assert [e.stream_version for e in await store.read_stream("s")] == [1]


async def test_a_retry_from_another_process_returns_the_original_result(
    postgres_url: str, pg_schema: str
) -> None:
    a = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    b = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    try:
        events = [NewEvent(event_id=uuid7(), type="T") for _ in range(3)]
        results = await asyncio.gather(
            a.append("order-1", events, expected_version=ANY),
            b.append("order-1", events, expected_version=ANY),
        )
        assert results[0] == results[1]
        assert await a.stream_version("order-1") == 3
    finally:
        await a.close()
        await b.close()


async def test_subscription_is_woken_by_a_notification_from_another_store(
    postgres_url: str, pg_schema: str
) -> None:
    # Polling is off in practice (an hour), so only the notification can deliver this.
    follower = await PostgresEventStore.open(postgres_url, schema=pg_schema, poll_interval=3600)
    writer = await PostgresEventStore.open(postgres_url, schema=pg_schema)
    try:
        stream = follower.subscribe()
        first: asyncio.Task[RecordedEvent] = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)  # let the subscription go idle
        await writer.append("elsewhere", one(), expected_version=NO_STREAM)
        event = await asyncio.wait_for(first, 30)
        assert event.stream_id == "elsewhere"
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await follower.close()
        await writer.close()


async def test_append_works_again_after_the_connection_is_killed(
    store: PostgresEventStore, postgres_url: str
) -> None:
    await store.append("before", one(), expected_version=NO_STREAM)
    # Only this store's writer: other tests and programs may share the server.
    writer = store._writer.connection
    assert writer is not None
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (writer.info.backend_pid,))
    events = one()
    try:
        await store.append("after", events, expected_version=NO_STREAM)
    except EventStoreError as exc:
        assert "retry" in str(exc)
        await store.append("after", events, expected_version=NO_STREAM)
    assert await store.stream_version("after") == 1


async def test_migrations_run_once_when_many_processes_start_together(
    postgres_url: str, pg_schema: str
) -> None:
    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            return await migrate(conn, pg_schema)

    ran = await asyncio.gather(*(run() for _ in range(6)))
    assert sorted(ran) == [0] * 5 + [len(MIGRATIONS)]
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute(
            sql.SQL("SELECT version FROM {}.migrations ORDER BY version").format(
                sql.Identifier(pg_schema)
            )
        )
        assert [row[0] for row in await cur.fetchall()] == [m.version for m in MIGRATIONS]


async def test_a_schema_from_a_newer_twofold_is_refused(
    store: PostgresEventStore, postgres_url: str, pg_schema: str
) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("INSERT INTO {}.migrations (version, name) VALUES (999, 'future')").format(
                sql.Identifier(pg_schema)
            )
        )
    with pytest.raises(ConfigurationError, match="newer"):
        await PostgresEventStore.open(postgres_url, schema=pg_schema)


def test_a_schema_name_that_is_not_plain_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        PostgresEventStore("postgresql://unused", schema='x"; DROP TABLE y; --')


async def test_idempotency_store_keeps_the_first_answer_across_processes(
    postgres_url: str, pg_schema: str
) -> None:
    stores = [await PostgresIdempotencyStore.open(postgres_url, schema=pg_schema) for _ in range(3)]
    try:
        assert await stores[0].get("k") is None
        answers = await asyncio.gather(
            *(s.put("k", f"fp-{i}", f"r-{i}".encode()) for i, s in enumerate(stores))
        )
        assert len(set(answers)) == 1
        assert await stores[1].get("k") == answers[0]
        with pytest.raises(ValueError):
            await stores[0].get("")
    finally:
        for s in stores:
            await s.close()


async def test_idempotency_answers_expire_after_keep_for_and_are_pruned(
    postgres_url: str, pg_schema: str
) -> None:
    short = timedelta(milliseconds=300)
    keys = await PostgresIdempotencyStore.open(postgres_url, schema=pg_schema, keep_for=short)
    try:
        for n in range(3):
            await keys.put(f"old-{n}", "fp-a", b"first")
        assert await keys.put("old-0", "fp-b", b"second") == ("fp-a", b"first")
        await asyncio.sleep(short.total_seconds() * 1.5)
        assert await keys.get("old-0") is None
        # A new answer takes the expired one's place (the others stay until pruned).
        assert await keys.put("old-0", "fp-b", b"second") == ("fp-b", b"second")
        assert await keys.put("old-0", "fp-c", b"third") == ("fp-b", b"second")
        assert await keys.prune() == 2
        assert await keys.prune() == 0
        assert await keys.get("old-0") == ("fp-b", b"second")
    finally:
        await keys.close()
    with pytest.raises(ValueError, match="keep_for"):
        await PostgresIdempotencyStore.open(postgres_url, schema=pg_schema, keep_for=timedelta(0))


async def test_the_composition_root_opens_both_stores_from_one_url(
    postgres_url: str, pg_schema: str
) -> None:
    separator = "&" if "?" in postgres_url else "?"
    store, keys = await open_postgres_event_store(f"{postgres_url}{separator}schema={pg_schema}")
    try:
        assert store.schema == pg_schema
        await store.append("s", one(), expected_version=NO_STREAM)
        assert await keys.put("k", "fp", b"r") == ("fp", b"r")
        await keys.close()  # shares the store's connections: closes nothing
        assert await keys.get("k") == ("fp", b"r")
    finally:
        await store.close()


def test_split_schema_takes_twofold_parameter_out_of_the_url() -> None:
    assert split_schema("postgresql://u@h:5432/db?schema=app&sslmode=require") == (
        "postgresql://u@h:5432/db?sslmode=require",
        "app",
    )
    assert split_schema("postgresql://h/db") == ("postgresql://h/db", "twofold")
    with pytest.raises(ConfigurationError):
        split_schema("postgresql://h/db?schema=bad-name")
    with pytest.raises(ConfigurationError):
        split_schema("mysql://h/db")


async def test_a_connection_lost_while_idle_is_replaced_before_the_next_append(
    store: PostgresEventStore, postgres_url: str
) -> None:
    await store.append("before", one(), expected_version=NO_STREAM)
    writer = store._writer.connection
    assert writer is not None
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (writer.info.backend_pid,))
    # Wait until the loop has read the server's goodbye on the writer's socket: the loss is
    # known, and the next append reconnects.
    for _ in range(3000):  # 30 s at most: a guard against hanging, not a limit
        if not store._writer._direct.idle:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the writer never noticed its connection was gone")
    # Nothing was in flight, so nothing is in doubt: no append fails.
    for n in range(3):
        await store.append(f"after-{n}", one(), expected_version=NO_STREAM)
        await quiet(store)
    assert store._writer.connection is not writer

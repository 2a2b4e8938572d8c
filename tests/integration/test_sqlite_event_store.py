"""What the SQLite event store does beyond the shared contract: its file, its batches."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from twofold.adapters.sqlite._append import AppendOp, Batch
from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.adapters.sqlite.schema import SCHEMA_VERSION, connect_writer
from twofold.errors import (
    ConcurrencyError,
    ConfigurationError,
    DuplicateEventError,
    EventStoreError,
    StoreClosedError,
)
from twofold.records import ANY, NO_STREAM, AppendResult, RecordedEvent
from twofold.testing.event_store_contract import new_event


async def test_opening_twice_keeps_schema_and_events(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SQLiteEventStore(path) as store:
        await store.append("a", [new_event()], expected_version=NO_STREAM)
    async with SQLiteEventStore(path) as store:
        assert await store.stream_version("a") == 1
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT component, version FROM schema_migrations ORDER BY version"
        ).fetchall()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    # Each migration ran once, in order, up to the version this twofold knows.
    assert rows == [("event_store", v) for v in range(1, SCHEMA_VERSION + 1)]
    assert mode == "wal"


async def test_opening_a_newer_schema_asks_to_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    await (await SQLiteEventStore.open(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES ('event_store', 99, 0)")
    conn.close()
    with pytest.raises(ConfigurationError, match="upgrade twofold"):
        await SQLiteEventStore.open(path)


@pytest.mark.parametrize(
    ("path", "options"),
    [(":memory:", {}), ("", {}), ("x.db", {"synchronous": "OFF"}), ("x.db", {"poll_interval": 0})],
)
def test_constructor_refuses_bad_settings(path: str, options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        SQLiteEventStore(path, **options)  # type: ignore[arg-type]


async def test_opening_in_a_missing_folder_says_what_to_check(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="folder exists"):
        await SQLiteEventStore.open(tmp_path / "missing" / "events.db")


async def test_unopened_store_says_how_to_open(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "events.db")
    with pytest.raises(ConfigurationError, match=r"SQLiteEventStore\.open"):
        await store.head_position()


async def test_failing_appends_do_not_fail_others_committed_with_them(tmp_path: Path) -> None:
    async with SQLiteEventStore(tmp_path / "events.db") as store:
        taken = new_event()
        await store.append("taken", [taken], expected_version=NO_STREAM)
        await store.append("busy", [new_event()], expected_version=NO_STREAM)
        # Queued together, these go to the writer in as few transactions as it can.
        outcomes = await asyncio.gather(
            store.append("fresh-1", [new_event()], expected_version=NO_STREAM),
            store.append("busy", [new_event()], expected_version=NO_STREAM),
            store.append("dup", [new_event(), taken], expected_version=ANY),
            store.append("fresh-2", [new_event(), new_event()], expected_version=NO_STREAM),
            store.append("taken", [taken], expected_version=NO_STREAM),
            return_exceptions=True,
        )
        fresh_1, busy, dup, fresh_2, retried = outcomes
        assert isinstance(fresh_1, AppendResult) and fresh_1.version == 1
        assert isinstance(busy, ConcurrencyError)
        assert isinstance(dup, DuplicateEventError)
        assert isinstance(fresh_2, AppendResult) and fresh_2.version == 2
        assert isinstance(retried, AppendResult) and retried.position == 1
        assert await store.head_position() == 5
        assert await store.stream_version("dup") == 0


async def test_same_events_twice_in_one_batch_are_stored_once(tmp_path: Path) -> None:
    async with SQLiteEventStore(tmp_path / "events.db") as store:
        events = [new_event(), new_event()]
        first, second = await asyncio.gather(
            store.append("a", events, expected_version=NO_STREAM),
            store.append("a", events, expected_version=NO_STREAM),
        )
        assert first == second
        assert await store.head_position() == 2


def test_appends_larger_than_one_statement_are_split(tmp_path: Path) -> None:
    conn = connect_writer(str(tmp_path / "events.db"), synchronous="FULL", busy_timeout=5)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 20)  # two rows per INSERT
    try:
        ops = [
            AppendOp("a", [new_event() for _ in range(7)], NO_STREAM),
            AppendOp("b", [new_event() for _ in range(3)], NO_STREAM),
        ]
        conn.execute("BEGIN IMMEDIATE")
        batch = Batch(conn, ops, time.time_ns() // 1000)
        results = [op(conn, batch) for op in ops]
        batch.flush(conn)
        conn.execute("COMMIT")
        rows = conn.execute("SELECT position, stream_id, stream_version FROM events").fetchall()
    finally:
        conn.close()
    assert [r.position for r in results] == [7, 10]
    assert rows == [(p, "a", p) for p in range(1, 8)] + [(7 + v, "b", v) for v in range(1, 4)]


async def test_closing_ends_subscriptions_and_refuses_calls(tmp_path: Path) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.db", poll_interval=60)
    subscription = store.subscribe()
    pending = asyncio.ensure_future(anext(subscription))
    await asyncio.sleep(0)
    await store.close()
    with pytest.raises(StoreClosedError):
        await asyncio.wait_for(pending, 5)
    with pytest.raises(StoreClosedError):
        await store.append("a", [new_event()], expected_version=ANY)
    await store.close()  # again: nothing happens


async def test_subscriber_sees_appends_of_another_store_on_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with (
        SQLiteEventStore(path, poll_interval=0.05) as watched,
        SQLiteEventStore(path) as other,
    ):
        subscription = watched.subscribe()
        try:
            pending = asyncio.ensure_future(anext(subscription))
            result = await other.append("a", [new_event()], expected_version=NO_STREAM)
            assert await asyncio.wait_for(pending, 10) == result.events[0]
        finally:
            await subscription.aclose()  # type: ignore[attr-defined]


async def test_subscribers_sharing_reads_each_see_every_event_once(tmp_path: Path) -> None:
    # Subscriptions at the same place share one read (SQLiteEventStore._page). What a shared
    # read returned must never hide a later commit: neither this store's own, which wake
    # the subscribers, nor another store's, which only the poll finds.
    path = tmp_path / "events.db"
    async with (
        SQLiteEventStore(path, poll_interval=0.05) as watched,
        SQLiteEventStore(path) as other,
    ):
        subscriptions = [watched.subscribe() for _ in range(4)]

        async def take(subscription: AsyncIterator[RecordedEvent], count: int) -> list[int]:
            return [(await anext(subscription)).position for _ in range(count)]

        try:
            # Another store's commits: only the poll finds them, nothing here commits.
            readers = [asyncio.ensure_future(take(s, 3)) for s in subscriptions]
            await asyncio.sleep(0.1)  # every subscriber has read the empty log and waits
            for n in range(3):
                await other.append(f"theirs-{n}", [new_event()], expected_version=NO_STREAM)
            assert await asyncio.wait_for(asyncio.gather(*readers), 10) == [[1, 2, 3]] * 4
            # Then both, interleaved.
            readers = [asyncio.ensure_future(take(s, 6)) for s in subscriptions]
            for n in range(3):
                await watched.append(f"mine-{n}", [new_event()], expected_version=NO_STREAM)
                await other.append(f"theirs-{n + 3}", [new_event()], expected_version=NO_STREAM)
            seen = await asyncio.wait_for(asyncio.gather(*readers), 10)
            assert seen == [[4, 5, 6, 7, 8, 9]] * 4
        finally:
            for subscription in subscriptions:
                await subscription.aclose()  # type: ignore[attr-defined]


async def test_synchronous_normal_is_a_choice(tmp_path: Path) -> None:
    async with SQLiteEventStore(tmp_path / "events.db", synchronous="NORMAL") as store:
        result = await store.append("a", [new_event()], expected_version=NO_STREAM)
        assert result.position == 1


def test_one_batch_recognises_ids_staged_by_its_earlier_appends(tmp_path: Path) -> None:
    conn = connect_writer(str(tmp_path / "events.db"), synchronous="FULL", busy_timeout=5)
    try:
        events = [new_event(), new_event()]
        ops = [
            AppendOp("a", events, NO_STREAM),
            AppendOp("a", events, NO_STREAM),
            AppendOp("b", [events[1]], NO_STREAM),
            AppendOp("a", [new_event()], ANY),
        ]
        conn.execute("BEGIN IMMEDIATE")
        batch = Batch(conn, ops, time.time_ns() // 1000)
        first = ops[0](conn, batch)
        assert ops[1](conn, batch) == first  # a retry within the batch
        with pytest.raises(DuplicateEventError, match="'a'"):
            ops[2](conn, batch)
        last = ops[3](conn, batch)
        batch.flush(conn)
        conn.execute("COMMIT")
        rows = conn.execute("SELECT position, stream_id, stream_version FROM events").fetchall()
    finally:
        conn.close()
    assert (last.version, last.position) == (3, 3)
    assert rows == [(1, "a", 1), (2, "a", 2), (3, "a", 3)]


async def test_append_waits_for_another_writer_then_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SQLiteEventStore(path) as store:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
            pending = asyncio.ensure_future(
                store.append("a", [new_event()], expected_version=NO_STREAM)
            )
            await asyncio.sleep(0.05)
            other.execute("ROLLBACK")
            assert (await pending).version == 1
        finally:
            other.close()


async def test_append_fails_clearly_when_the_lock_stays_taken(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SQLiteEventStore(path, busy_timeout=0.1) as store:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(EventStoreError, match="locked"):
                await store.append("a", [new_event()], expected_version=NO_STREAM)
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert (await store.append("a", [new_event()], expected_version=NO_STREAM)).version == 1


async def test_a_file_of_an_older_schema_is_migrated_forward(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SQLiteEventStore(path) as store:
        await store.append("a", [new_event()], expected_version=NO_STREAM)
    with sqlite3.connect(path) as conn:  # back to schema version 1, as twofold 0.1 left it
        conn.execute("DROP INDEX idempotency_created_at")
        conn.execute("DROP TABLE store_identity")
        conn.execute("DELETE FROM schema_migrations WHERE version > 1")
    conn.close()
    async with SQLiteEventStore(path) as store:
        assert await store.stream_version("a") == 1
    with sqlite3.connect(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        index = conn.execute(
            "SELECT name FROM sqlite_master WHERE name = 'idempotency_created_at'"
        ).fetchone()
    conn.close()
    assert sorted(versions) == list(range(1, SCHEMA_VERSION + 1)) and index is not None


async def test_reading_the_log_gives_each_event_its_own_id_and_time(tmp_path: Path) -> None:
    # Rows are turned into records a page at a time, with one time made per run of rows
    # that share it: events committed together share it, the others must not.
    async with SQLiteEventStore(tmp_path / "events.db") as store:
        appended: list[RecordedEvent] = []
        together = await store.append("a", [new_event(), new_event()], expected_version=NO_STREAM)
        appended.extend(together.events)
        for stream in ("b", "c"):
            result = await store.append(stream, [new_event()], expected_version=NO_STREAM)
            appended.extend(result.events)
        with sqlite3.connect(tmp_path / "events.db") as conn:
            # Times a microsecond apart, and one before 1970: each read back as stored.
            conn.execute("UPDATE events SET recorded_at = 1 WHERE stream_id = 'b'")
            conn.execute("UPDATE events SET recorded_at = -1 WHERE stream_id = 'c'")
        conn.close()
        read = await store.read_all(after=0)
    assert [e.event_id for e in read] == [e.event_id for e in appended]
    assert read[:2] == appended[:2]
    assert read[0].recorded_at == read[1].recorded_at
    assert read[2].recorded_at == datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert read[3].recorded_at == datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert all(type(e.event_id) is uuid.UUID for e in read)

"""The EventStore contract: the promises of DESIGN section 2 as tests every backend passes.

Subclass ``EventStoreContract`` in a test module; pytest collects your subclass (its name
starts with ``Test``), not this base. Provide ``make_store``, and ``reopen`` if the backend
keeps events across a restart::

    class TestMyEventStore(EventStoreContract):
        @pytest.fixture(autouse=True)
        def _place(self, tmp_path: Path) -> None:
            self.path = tmp_path / "events.db"      # per-test resources go on self

        async def make_store(self) -> EventStore:
            return await MyEventStore.open(self.path)  # fresh, empty and open

        async def reopen(self, store: EventStore) -> EventStore:
            await store.close()
            return await MyEventStore.open(self.path)  # the same data, opened anew

- ``make_store()`` is awaited once per test, through the ``store`` fixture, which closes
  the store after the test (``close()`` must accept being called twice).
- ``reopen(store)`` closes ``store`` and opens the same data again; the test closes the
  store it returns. Without it, the durability test is skipped.
- Subscriptions must be woken by a notification: give the store of ``make_store`` a poll
  interval far above ``live_timeout`` (5 s), so that the live-event test proves it.

The tests need pytest and pytest-asyncio; they run in strict and in auto mode.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC

import pytest
import pytest_asyncio

from twofold.application.ports import EventStore
from twofold.errors import ConcurrencyError, DuplicateEventError, StoreClosedError
from twofold.records import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    NewEvent,
    RecordedEvent,
    Snapshot,
    uuid7,
)
from twofold.testing.append_streams_contract import AppendStreamsContract

__all__ = ["EventStoreContract", "new_event", "read_everything"]


def new_event(type: str = "Tested", data: bytes = b'{"n": 1}', **fields: object) -> NewEvent:
    """A NewEvent with a fresh uuid7 id."""
    return NewEvent(event_id=uuid7(), type=type, data=data, **fields)  # type: ignore[arg-type]


async def read_everything(store: EventStore) -> list[RecordedEvent]:
    """The whole global log, page by page."""
    events: list[RecordedEvent] = []
    while True:
        page = await store.read_all(after=events[-1].position if events else 0, limit=500)
        if not page:
            return events
        events.extend(page)


async def _aclose(iterator: AsyncIterator[RecordedEvent]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def _ids(events: Sequence[RecordedEvent | NewEvent]) -> list[uuid.UUID]:
    return [event.event_id for event in events]


@pytest.mark.asyncio
class EventStoreContract(AppendStreamsContract):
    """The tests every EventStore backend must pass; see the module docstring.

    It includes ``AppendStreamsContract`` (atomic appends across streams, and idempotency
    keys stored with them): override ``make_idempotency_store`` to run its key tests.
    """

    live_timeout: float = 5.0
    """How long a live event may take to reach a subscriber; a guard against hanging."""

    async def make_store(self) -> EventStore:
        raise NotImplementedError("subclasses return a fresh, empty, open store")

    async def reopen(self, store: EventStore) -> EventStore:
        """Close ``store`` and open its data anew; backends that keep nothing skip."""
        pytest.skip(f"{type(store).__name__} keeps nothing across a reopen")

    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[EventStore]:
        store = await self.make_store()
        try:
            yield store
        finally:
            await store.close()

    # -- appending --------------------------------------------------------------------------

    async def test_append_records_versions_positions_and_content(self, store: EventStore) -> None:
        sent = [new_event("Opened", b'{"a": 1}', metadata=b'{"actor": "ann"}'), new_event()]
        result = await store.append("acct-1", sent, expected_version=NO_STREAM)
        assert (result.stream_id, result.version) == ("acct-1", 2)
        assert result.position == result.events[-1].position
        assert [e.stream_version for e in result.events] == [1, 2]
        stored = await store.read_stream("acct-1")
        assert stored == list(result.events)
        first = stored[0]
        assert (first.type, first.schema_version, first.data, first.metadata) == (
            "Opened",
            1,
            b'{"a": 1}',
            b'{"actor": "ann"}',
        )
        assert first.recorded_at.utcoffset() == UTC.utcoffset(None)

    async def test_streams_are_listed_in_id_order_with_versions_and_paged(
        self, store: EventStore
    ) -> None:
        assert await store.list_streams() == []
        for stream, count in (("bravo", 2), ("alpha", 1), ("delta", 3), ("charlie", 1)):
            await store.append(stream, [new_event() for _ in range(count)], expected_version=ANY)
        listed = await store.list_streams()
        assert [(s.stream_id, s.version) for s in listed] == [
            ("alpha", 1), ("bravo", 2), ("charlie", 1), ("delta", 3),
        ]  # fmt: skip
        delta = await store.read_stream("delta")
        assert listed[-1].last_position == delta[-1].position
        first = await store.list_streams(limit=2)
        rest = await store.list_streams(after=first[-1].stream_id, limit=2)
        assert [s.stream_id for s in first + rest] == ["alpha", "bravo", "charlie", "delta"]
        assert await store.list_streams(after="delta") == []
        with pytest.raises(ValueError, match="limit"):
            await store.list_streams(limit=0)

    async def test_append_writes_all_events_or_none(self, store: EventStore) -> None:
        taken = new_event()
        await store.append("other", [taken], expected_version=NO_STREAM)
        head = await store.head_position()
        with pytest.raises(DuplicateEventError):
            await store.append("acct-1", [new_event(), taken, new_event()], expected_version=ANY)
        assert await store.read_stream("acct-1") == []
        assert await store.stream_version("acct-1") == 0
        assert await store.head_position() == head

    async def test_append_rejects_an_id_twice_in_one_append(self, store: EventStore) -> None:
        event = new_event()
        with pytest.raises(ValueError, match="twice"):
            await store.append("acct-1", [event, event], expected_version=ANY)
        assert await store.head_position() == 0

    async def test_append_rejects_empty_events_and_stream_id(self, store: EventStore) -> None:
        with pytest.raises(ValueError, match="no events"):
            await store.append("acct-1", [], expected_version=ANY)
        with pytest.raises(ValueError, match="stream_id"):
            await store.append("", [new_event()], expected_version=ANY)
        assert await store.head_position() == 0

    async def test_append_rejects_stale_expected_version(self, store: EventStore) -> None:
        await store.append("acct-1", [new_event(), new_event()], expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError) as caught:
            await store.append("acct-1", [new_event()], expected_version=1)
        error = caught.value
        assert (error.stream_id, error.expected, error.actual) == ("acct-1", 1, 2)
        assert "1" in str(error) and "2" in str(error)
        assert await store.stream_version("acct-1") == 2

    async def test_append_rejects_expected_version_ahead_of_stream(self, store: EventStore) -> None:
        await store.append("acct-1", [new_event()], expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError) as caught:
            await store.append("acct-1", [new_event()], expected_version=5)
        assert (caught.value.expected, caught.value.actual) == (5, 1)

    async def test_append_at_exact_version_continues_the_stream(self, store: EventStore) -> None:
        await store.append("acct-1", [new_event()], expected_version=0)
        result = await store.append("acct-1", [new_event()], expected_version=1)
        assert result.version == 2

    async def test_no_stream_rejects_an_existing_stream(self, store: EventStore) -> None:
        await store.append("acct-1", [new_event()], expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError) as caught:
            await store.append("acct-1", [new_event()], expected_version=NO_STREAM)
        assert (caught.value.expected, caught.value.actual) == (NO_STREAM.value, 1)

    async def test_stream_exists_requires_a_stream(self, store: EventStore) -> None:
        with pytest.raises(ConcurrencyError) as caught:
            await store.append("acct-1", [new_event()], expected_version=STREAM_EXISTS)
        assert (caught.value.expected, caught.value.actual) == (STREAM_EXISTS.value, 0)
        await store.append("acct-1", [new_event()], expected_version=NO_STREAM)
        result = await store.append("acct-1", [new_event()], expected_version=STREAM_EXISTS)
        assert result.version == 2

    async def test_any_appends_at_whatever_version(self, store: EventStore) -> None:
        first = await store.append("acct-1", [new_event()], expected_version=ANY)
        second = await store.append("acct-1", [new_event()], expected_version=ANY)
        assert (first.version, second.version) == (1, 2)

    async def test_concurrent_appends_at_one_version_let_exactly_one_win(
        self, store: EventStore
    ) -> None:
        outcomes = await asyncio.gather(
            *(store.append("acct-1", [new_event()], expected_version=NO_STREAM) for _ in range(10)),
            return_exceptions=True,
        )
        assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
        assert all(
            isinstance(o, ConcurrencyError) for o in outcomes if isinstance(o, BaseException)
        )
        assert await store.stream_version("acct-1") == 1

    # -- idempotent retries -----------------------------------------------------------------

    @pytest.mark.parametrize("expected", [NO_STREAM, 0, ANY])
    async def test_retry_returns_original_result_and_stores_nothing_twice(
        self, store: EventStore, expected: int | object
    ) -> None:
        events = [new_event(), new_event()]
        original = await store.append("acct-1", events, expected_version=expected)  # type: ignore[arg-type]
        await store.append("acct-1", [new_event()], expected_version=2)  # the stream moves on
        retried = await store.append("acct-1", events, expected_version=expected)  # type: ignore[arg-type]
        assert retried == original
        assert len(await store.read_stream("acct-1")) == 3
        assert await store.head_position() == 3

    async def test_retry_after_other_appends_returns_original_positions(
        self, store: EventStore
    ) -> None:
        events = [new_event()]
        original = await store.append("acct-1", events, expected_version=0)
        await store.append("other", [new_event(), new_event()], expected_version=NO_STREAM)
        retried = await store.append("acct-1", events, expected_version=0)
        assert (retried.position, retried.version) == (original.position, 1)

    async def test_retry_with_other_content_raises_duplicate(self, store: EventStore) -> None:
        event = new_event(data=b'{"n": 1}')
        await store.append("acct-1", [event], expected_version=NO_STREAM)
        changed = NewEvent(event_id=event.event_id, type=event.type, data=b'{"n": 2}')
        with pytest.raises(DuplicateEventError) as caught:
            await store.append("acct-1", [changed], expected_version=NO_STREAM)
        assert caught.value.event_id == str(event.event_id)
        retyped = NewEvent(event_id=event.event_id, type="Other", data=event.data)
        with pytest.raises(DuplicateEventError):
            await store.append("acct-1", [retyped], expected_version=NO_STREAM)
        assert len(await store.read_stream("acct-1")) == 1

    async def test_retry_with_extra_events_raises_duplicate(self, store: EventStore) -> None:
        events = [new_event(), new_event()]
        await store.append("acct-1", events, expected_version=NO_STREAM)
        with pytest.raises(DuplicateEventError):
            await store.append("acct-1", [*events, new_event()], expected_version=NO_STREAM)
        assert await store.stream_version("acct-1") == 2

    async def test_retry_of_a_prefix_returns_those_events(self, store: EventStore) -> None:
        # The rule is per event: ids stored at the versions the retry would write them.
        original = await store.append(
            "acct-1", [new_event(), new_event()], expected_version=NO_STREAM
        )
        first = original.events[0]
        again = NewEvent(event_id=first.event_id, type=first.type, data=first.data)
        retried = await store.append("acct-1", [again], expected_version=NO_STREAM)
        assert (retried.version, retried.position, retried.events) == (1, first.position, (first,))
        assert await store.stream_version("acct-1") == 2

    async def test_retry_at_another_version_raises_duplicate(self, store: EventStore) -> None:
        event = new_event()
        await store.append("acct-1", [event], expected_version=NO_STREAM)
        with pytest.raises(DuplicateEventError):
            await store.append("acct-1", [event], expected_version=1)

    async def test_event_id_of_another_stream_raises_duplicate(self, store: EventStore) -> None:
        event = new_event()
        await store.append("acct-1", [event], expected_version=NO_STREAM)
        with pytest.raises(DuplicateEventError, match="acct-1"):
            await store.append("acct-2", [event], expected_version=NO_STREAM)
        assert await store.stream_version("acct-2") == 0

    # -- reading ----------------------------------------------------------------------------

    async def test_read_stream_from_version_with_limit(self, store: EventStore) -> None:
        sent = [new_event() for _ in range(5)]
        await store.append("acct-1", sent, expected_version=NO_STREAM)
        assert _ids(await store.read_stream("acct-1", from_version=3)) == _ids(sent[2:])
        page = await store.read_stream("acct-1", from_version=2, limit=2)
        assert [e.stream_version for e in page] == [2, 3]
        assert await store.read_stream("acct-1", from_version=6) == []
        assert await store.read_stream("missing") == []

    async def test_read_stream_data_matches_read_stream(self, store: EventStore) -> None:
        # Only for stores with the optional StreamDataReader method.
        read_data = getattr(store, "read_stream_data", None)
        if read_data is None:
            pytest.skip(f"{type(store).__name__} has no read_stream_data")
        await store.append("acct-1", [new_event("A"), new_event("B")], expected_version=0)
        for start in (1, 2, 3):
            rows = await read_data("acct-1", from_version=start)
            events = await store.read_stream("acct-1", from_version=start)
            assert rows == [(e.stream_version, e.type, e.schema_version, e.data) for e in events]

    async def test_read_all_after_position_with_limit(self, store: EventStore) -> None:
        await store.append("a", [new_event(), new_event()], expected_version=NO_STREAM)
        await store.append("b", [new_event()], expected_version=NO_STREAM)
        await store.append("a", [new_event()], expected_version=2)
        everything = await store.read_all()
        positions = [e.position for e in everything]
        assert len(positions) == 4 and positions == sorted(set(positions))
        assert [e.stream_id for e in everything] == ["a", "a", "b", "a"]
        assert await store.read_all(after=positions[1], limit=1) == [everything[2]]
        assert await store.read_all(after=positions[-1]) == []

    async def test_read_all_filters_by_type(self, store: EventStore) -> None:
        await store.append(
            "a",
            [new_event("Opened"), new_event("Noted"), new_event("Closed")],
            expected_version=NO_STREAM,
        )
        picked = await store.read_all(types={"Opened", "Closed"})
        assert [e.type for e in picked] == ["Opened", "Closed"]
        assert await store.read_all(types=["Closed"], after=picked[0].position, limit=1) == [
            picked[1]
        ]
        assert await store.read_all(types=["Unknown"]) == []

    async def test_positions_strictly_increase_across_appends(self, store: EventStore) -> None:
        for n in range(6):
            await store.append(f"s-{n % 3}", [new_event(), new_event()], expected_version=ANY)
        positions = [e.position for e in await read_everything(store)]
        assert all(b > a for a, b in itertools.pairwise(positions))

    async def test_head_position_and_stream_version_start_at_zero(self, store: EventStore) -> None:
        assert await store.head_position() == 0
        assert await store.stream_version("acct-1") == 0
        result = await store.append("acct-1", [new_event(), new_event()], expected_version=0)
        assert await store.head_position() == result.position
        assert await store.stream_version("acct-1") == 2

    # -- subscriptions ----------------------------------------------------------------------

    async def test_subscribe_yields_past_then_live_events(self, store: EventStore) -> None:
        past = await store.append("a", [new_event(), new_event()], expected_version=NO_STREAM)
        subscription = store.subscribe(after=0)
        try:
            seen = [await anext(subscription), await anext(subscription)]
            assert seen == list(past.events)
            pending = asyncio.ensure_future(anext(subscription))
            # Give it time to catch up and wait: the append below must then wake it. (Were
            # it slower, it would find the event by reading; the test would still pass.)
            await asyncio.sleep(0.05)
            live = await store.append("b", [new_event()], expected_version=NO_STREAM)
            # Far below the poll interval the contract asks for: a notification woke it.
            assert await asyncio.wait_for(pending, self.live_timeout) == live.events[0]
        finally:
            await _aclose(subscription)

    async def test_subscribe_starts_after_position_and_filters_types(
        self, store: EventStore
    ) -> None:
        first = await store.append(
            "a", [new_event("Opened"), new_event("Noted")], expected_version=NO_STREAM
        )
        subscription = store.subscribe(after=first.events[0].position, types=["Opened"])
        try:
            pending = asyncio.ensure_future(anext(subscription))
            await asyncio.sleep(0.05)
            await store.append("a", [new_event("Noted")], expected_version=2)
            wanted = await store.append("b", [new_event("Opened")], expected_version=NO_STREAM)
            assert await asyncio.wait_for(pending, self.live_timeout) == wanted.events[0]
        finally:
            await _aclose(subscription)

    # -- snapshots --------------------------------------------------------------------------

    async def test_snapshot_load_returns_the_newest(self, store: EventStore) -> None:
        assert await store.load_snapshot("acct-1") is None
        for version in (5, 10):
            await store.save_snapshot(_snapshot(version, state=b"v%d" % version))
        assert await store.load_snapshot("acct-1") == _snapshot(10, state=b"v10")
        assert await store.load_snapshot("acct-2") is None

    async def test_snapshot_never_moves_backwards(self, store: EventStore) -> None:
        await store.save_snapshot(_snapshot(10))
        await store.save_snapshot(_snapshot(3))
        loaded = await store.load_snapshot("acct-1")
        assert loaded is not None and loaded.version == 10

    async def test_snapshot_at_same_version_replaces_for_new_schema(
        self, store: EventStore
    ) -> None:
        await store.save_snapshot(_snapshot(10, schema_version=1))
        await store.save_snapshot(_snapshot(10, schema_version=2, state=b"new"))
        assert await store.load_snapshot("acct-1") == _snapshot(10, schema_version=2, state=b"new")

    # -- lifetime ---------------------------------------------------------------------------

    async def test_appended_events_survive_reopen(self, store: EventStore) -> None:
        result = await store.append("acct-1", [new_event(), new_event()], expected_version=0)
        await store.save_snapshot(_snapshot(2))
        identity = await store.identity()
        reopened = await self.reopen(store)
        try:
            assert await reopened.identity() == identity
            assert await reopened.read_stream("acct-1") == list(result.events)
            assert await reopened.head_position() == result.position
            assert await reopened.load_snapshot("acct-1") == _snapshot(2)
            more = await reopened.append("acct-1", [new_event()], expected_version=2)
            assert more.position > result.position
        finally:
            await reopened.close()

    async def test_identity_is_kept_for_the_life_of_the_store(self, store: EventStore) -> None:
        identity = await store.identity()
        assert isinstance(identity, str) and len(identity) >= 16
        await store.append("acct-1", [new_event()], expected_version=NO_STREAM)
        assert await store.identity() == identity

    async def test_closed_store_refuses_calls(self, store: EventStore) -> None:
        await store.close()
        with pytest.raises(StoreClosedError):
            await store.append("acct-1", [new_event()], expected_version=ANY)
        with pytest.raises(StoreClosedError):
            await store.read_all()

    # -- many writers -----------------------------------------------------------------------

    async def test_concurrent_appenders_never_lose_or_duplicate_events(
        self, store: EventStore
    ) -> None:
        streams = [f"s-{n}" for n in range(4)]
        sent: list[uuid.UUID] = []

        async def appender(worker: int) -> None:
            for round_ in range(15):
                stream = streams[(worker + round_) % len(streams)]
                event = new_event()
                while True:  # decide at the version read, retry on a conflict
                    version = await store.stream_version(stream)
                    try:
                        await store.append(stream, [event], expected_version=version)
                        break
                    except ConcurrencyError:
                        continue
                sent.append(event.event_id)

        await asyncio.gather(*(appender(worker) for worker in range(12)))
        stored = await read_everything(store)
        assert Counter(_ids(stored)) == Counter(sent)
        positions = [e.position for e in stored]
        assert all(b > a for a, b in itertools.pairwise(positions))
        for stream in streams:
            versions = [e.stream_version for e in await store.read_stream(stream)]
            assert versions == list(range(1, len(versions) + 1))


def _snapshot(version: int, *, schema_version: int = 1, state: bytes = b"{}") -> Snapshot:
    return Snapshot(
        stream_id="acct-1",
        aggregate_type="Account",
        version=version,
        schema_version=schema_version,
        state=state,
    )

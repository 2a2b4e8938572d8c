"""The contract of ``EventStore.append_streams``: one atomic append across streams.

Part of ``EventStoreContract`` (which inherits these tests); a backend passes them by
passing that suite. ``make_idempotency_store(store)`` returns the IdempotencyStore that
reads the keys ``store`` writes; without it the idempotency tests are skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import pytest

from twofold.application.ports import EventStore, IdempotencyStore
from twofold.errors import (
    ConcurrencyError,
    DuplicateEventError,
    EventStoreError,
    IdempotencyKeyTakenError,
)
from twofold.records import (
    ANY,
    NO_STREAM,
    AppendResult,
    ExpectedVersion,
    IdempotencyRecord,
    NewEvent,
    StreamAppend,
    uuid7,
)

__all__ = ["AppendStreamsContract"]

DAY = timedelta(days=1)


def _event(n: int = 1) -> NewEvent:
    return NewEvent(event_id=uuid7(), type="Tested", data=b'{"n": %d}' % n)


def _part(stream_id: str, expected: ExpectedVersion, count: int = 1) -> StreamAppend:
    return StreamAppend(
        stream_id=stream_id,
        events=tuple(_event(n) for n in range(count)),
        expected_version=expected,
    )


def _answer(results: tuple[AppendResult, ...]) -> bytes:
    """An answer that shows the positions the store gave the events."""
    return b",".join(b"%s@%d" % (r.stream_id.encode(), r.position) for r in results)


def _record(key: str, *, keep_for: timedelta = DAY) -> IdempotencyRecord:
    return IdempotencyRecord(key=key, fingerprint="fp-" + key, answer=_answer, keep_for=keep_for)


@pytest.mark.asyncio
class AppendStreamsContract:
    """Tests of ``append_streams``, inherited by EventStoreContract."""

    async def make_idempotency_store(self, store: EventStore) -> IdempotencyStore:
        """The IdempotencyStore on ``store``'s keys; backends without one skip."""
        pytest.skip(f"no idempotency store given for {type(store).__name__}")

    # -- all or none ------------------------------------------------------------------------

    async def test_append_streams_writes_every_stream_with_positions_in_order(
        self, store: EventStore
    ) -> None:
        await store.append("acct-b", [_event()], expected_version=NO_STREAM)
        parts = [_part("acct-a", NO_STREAM, 2), _part("acct-b", 1)]
        results = await store.append_streams(parts)
        assert [(r.stream_id, r.version) for r in results] == [("acct-a", 2), ("acct-b", 2)]
        positions = [e.position for r in results for e in r.events]
        assert positions == sorted(positions) and positions[0] > 1
        assert [r.position for r in results] == [r.events[-1].position for r in results]
        assert list(results[0].events) == await store.read_stream("acct-a")
        assert list(results[1].events) == await store.read_stream("acct-b", from_version=2)
        assert [e.event_id for e in results[0].events] == [e.event_id for e in parts[0].events]

    async def test_append_streams_with_a_stale_second_stream_writes_nothing(
        self, store: EventStore
    ) -> None:
        await store.append("acct-b", [_event(), _event()], expected_version=NO_STREAM)
        head = await store.head_position()
        with pytest.raises(ConcurrencyError) as caught:
            await store.append_streams([_part("acct-a", NO_STREAM), _part("acct-b", 1)])
        assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (
            "acct-b",
            1,
            2,
        )
        assert await store.read_stream("acct-a") == []
        assert await store.stream_version("acct-b") == 2
        assert await store.head_position() == head

    async def test_append_streams_with_an_existing_new_stream_writes_nothing(
        self, store: EventStore
    ) -> None:
        await store.append("acct-a", [_event()], expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError) as caught:
            await store.append_streams([_part("acct-b", ANY), _part("acct-a", NO_STREAM)])
        assert caught.value.stream_id == "acct-a"
        assert await store.stream_version("acct-b") == 0
        assert await store.head_position() == 1

    async def test_append_streams_with_a_stored_event_id_writes_nothing(
        self, store: EventStore
    ) -> None:
        taken = _event()
        await store.append("other", [taken], expected_version=NO_STREAM)
        second = StreamAppend(stream_id="acct-b", events=(_event(), taken), expected_version=ANY)
        with pytest.raises(DuplicateEventError):
            await store.append_streams([_part("acct-a", ANY), second])
        assert await store.head_position() == 1
        assert await store.stream_version("acct-a") == 0

    async def test_append_streams_refuses_malformed_calls(self, store: EventStore) -> None:
        with pytest.raises(ValueError, match="no appends"):
            await store.append_streams([])
        with pytest.raises(ValueError, match="twice"):
            await store.append_streams([_part("acct-a", ANY), _part("acct-a", ANY)])
        shared = _event()
        with pytest.raises(ValueError, match="twice"):
            await store.append_streams(
                [
                    StreamAppend(stream_id="acct-a", events=(shared,), expected_version=ANY),
                    StreamAppend(stream_id="acct-b", events=(shared,), expected_version=ANY),
                ]
            )
        with pytest.raises(TypeError, match="StreamAppend"):
            await store.append_streams([("acct-a", [_event()], ANY)])  # type: ignore[list-item]
        assert await store.head_position() == 0

    async def test_a_stale_append_streams_holds_back_no_other_append(
        self, store: EventStore
    ) -> None:
        await store.append("acct-b", [_event()], expected_version=NO_STREAM)
        outcomes = await asyncio.gather(
            store.append_streams([_part("acct-a", NO_STREAM), _part("acct-b", 0)]),
            store.append_streams([_part("acct-c", NO_STREAM), _part("acct-d", NO_STREAM)]),
            store.append("acct-e", [_event()], expected_version=NO_STREAM),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], ConcurrencyError)
        assert not isinstance(outcomes[1], BaseException)
        assert not isinstance(outcomes[2], BaseException)
        for stream, version in (("acct-a", 0), ("acct-b", 1), ("acct-c", 1), ("acct-d", 1)):
            assert await store.stream_version(stream) == version

    # -- retries ----------------------------------------------------------------------------

    async def test_append_streams_retry_returns_the_original_results(
        self, store: EventStore
    ) -> None:
        parts = [_part("acct-a", NO_STREAM, 2), _part("acct-b", NO_STREAM)]
        original = await store.append_streams(parts)
        await store.append("acct-a", [_event()], expected_version=2)  # the stream moves on
        assert await store.append_streams(parts) == original
        assert await store.head_position() == 4

    async def test_append_streams_retry_with_other_content_raises_duplicate(
        self, store: EventStore
    ) -> None:
        parts = [_part("acct-a", NO_STREAM), _part("acct-b", NO_STREAM)]
        await store.append_streams(parts)
        first = parts[1].events[0]
        changed = NewEvent(event_id=first.event_id, type=first.type, data=b'{"n": 9}')
        with pytest.raises(DuplicateEventError):
            await store.append_streams(
                [
                    parts[0],
                    StreamAppend(stream_id="acct-b", events=(changed,), expected_version=NO_STREAM),
                ]
            )
        assert await store.head_position() == 2

    # -- many writers -----------------------------------------------------------------------

    async def test_concurrent_transfers_move_both_streams_or_neither(
        self, store: EventStore
    ) -> None:
        # Each transfer writes one event to each of two streams, at the versions it read.
        await store.append_streams([_part("acct-a", NO_STREAM), _part("acct-b", NO_STREAM)])
        done: list[tuple[AppendResult, ...]] = []

        async def transfer() -> None:
            for _ in range(3):
                while True:  # decide at the versions read, retry on a conflict
                    a = await store.stream_version("acct-a")
                    b = await store.stream_version("acct-b")
                    try:
                        done.append(
                            await store.append_streams([_part("acct-a", a), _part("acct-b", b)])
                        )
                        break
                    except ConcurrencyError:
                        continue

        await asyncio.gather(*(transfer() for _ in range(6)))
        assert await store.stream_version("acct-a") == 19
        assert await store.stream_version("acct-b") == 19
        versions = sorted((r[0].version, r[1].version) for r in done)
        assert versions == [(v, v) for v in range(2, 20)]
        positions = [e.position for r in done for e in (*r[0].events, *r[1].events)]
        assert len(set(positions)) == len(positions)

    # -- idempotency records ----------------------------------------------------------------

    async def test_idempotency_record_is_stored_with_the_events(self, store: EventStore) -> None:
        keys = await self.make_idempotency_store(store)
        results = await store.append_streams(
            [_part("acct-a", NO_STREAM), _part("acct-b", NO_STREAM)], idempotency=_record("k1")
        )
        assert await keys.get("k1") == ("fp-k1", _answer(results))
        assert _answer(results) == b"acct-a@1,acct-b@2"

    async def test_idempotency_record_of_a_refused_append_is_not_stored(
        self, store: EventStore
    ) -> None:
        keys = await self.make_idempotency_store(store)
        await store.append("acct-b", [_event()], expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError):
            await store.append_streams(
                [_part("acct-a", NO_STREAM), _part("acct-b", NO_STREAM)],
                idempotency=_record("k1"),
            )
        assert await keys.get("k1") is None
        assert await store.head_position() == 1

    async def test_a_taken_idempotency_key_stores_nothing(self, store: EventStore) -> None:
        keys = await self.make_idempotency_store(store)
        await keys.put("k1", "fp-first", b"first")
        with pytest.raises(IdempotencyKeyTakenError) as caught:
            await store.append_streams([_part("acct-a", NO_STREAM)], idempotency=_record("k1"))
        assert caught.value.key == "k1"
        assert await keys.get("k1") == ("fp-first", b"first")
        assert await store.head_position() == 0

    async def test_an_expired_idempotency_key_is_taken_over(self, store: EventStore) -> None:
        keys = await self.make_idempotency_store(store)
        await keys.put("k1", "fp-first", b"first")
        # Kept for a microsecond: the first answer is older than that by the next append.
        record = _record("k1", keep_for=timedelta(microseconds=1))
        results = await store.append_streams([_part("acct-a", NO_STREAM)], idempotency=record)
        assert await keys.get("k1") == ("fp-k1", _answer(results))

    async def test_concurrent_appends_with_one_key_let_exactly_one_store(
        self, store: EventStore
    ) -> None:
        keys = await self.make_idempotency_store(store)
        outcomes = await asyncio.gather(
            *(
                store.append_streams([_part(f"acct-{n}", NO_STREAM)], idempotency=_record("k1"))
                for n in range(6)
            ),
            return_exceptions=True,
        )
        won = [o for o in outcomes if not isinstance(o, BaseException)]
        assert len(won) == 1
        assert all(
            isinstance(o, IdempotencyKeyTakenError)
            for o in outcomes
            if isinstance(o, BaseException)
        )
        assert await keys.get("k1") == ("fp-k1", _answer(won[0]))
        assert len(await store.read_all()) == 1

    async def test_a_failing_answer_stores_nothing_and_holds_back_no_other_append(
        self, store: EventStore
    ) -> None:
        keys = await self.make_idempotency_store(store)

        def broken(results: Sequence[AppendResult]) -> bytes:
            raise RuntimeError("cannot encode")

        record = IdempotencyRecord(key="k1", fingerprint="fp", answer=broken, keep_for=DAY)
        outcomes = await asyncio.gather(
            store.append("acct-b", [_event()], expected_version=NO_STREAM),
            store.append_streams([_part("acct-a", NO_STREAM)], idempotency=record),
            store.append("acct-c", [_event()], expected_version=NO_STREAM),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], EventStoreError)
        assert "answer" in str(outcomes[1])
        assert [isinstance(o, BaseException) for o in outcomes] == [False, True, False]
        assert await store.read_stream("acct-a") == []
        assert await keys.get("k1") is None
        assert await store.stream_version("acct-b") == 1
        assert await store.stream_version("acct-c") == 1

"""The RelayStore contract, as tests every adapter passes.

Subclass ``RelayStoreContract`` in a test module (its name must start with ``Test``) and
provide ``make_store`` (a fresh, empty, open store). A store that keeps its data subclasses
``DurableRelayStoreContract`` instead and also provides ``reopen`` (close it and open the
same data again).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest_asyncio

from twofold.application.relay.store import ParkedMessage, RelayCheckpoint, RelayStore

__all__ = ["DurableRelayStoreContract", "RelayStoreContract"]

DEST = "nats://broker:4222/TWOFOLD"
OTHER = "kafka://broker:9092/twofold"


def parked(position: int, stream_id: str = "order-1", sequence: int | None = None) -> ParkedMessage:
    return ParkedMessage(
        destination=DEST,
        position=position,
        stream_id=stream_id,
        sequence=sequence,
        error="too large",
        parked_at=datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
    )


class RelayStoreContract:
    async def make_store(self) -> RelayStore:
        raise NotImplementedError

    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[RelayStore]:
        made = await self.make_store()
        try:
            yield made
        finally:
            await made.close()

    async def test_a_new_destination_starts_at_position_and_sequence_zero(
        self, store: RelayStore
    ) -> None:
        assert await store.prepare(DEST) == RelayCheckpoint(DEST, 0, 0)
        assert await store.prepare(DEST) == RelayCheckpoint(DEST, 0, 0)

    async def test_each_destination_keeps_its_own_checkpoint(self, store: RelayStore) -> None:
        await store.prepare(DEST)
        await store.prepare(OTHER)
        await store.advance(DEST, position=40, sequence=12)
        assert await store.checkpoint(DEST) == RelayCheckpoint(DEST, 40, 12)
        assert await store.checkpoint(OTHER) == RelayCheckpoint(OTHER, 0, 0)

    async def test_a_checkpoint_never_moves_back(self, store: RelayStore) -> None:
        await store.prepare(DEST)
        await store.advance(DEST, position=40, sequence=12)
        await store.advance(DEST, position=30, sequence=10)
        assert await store.checkpoint(DEST) == RelayCheckpoint(DEST, 40, 12)

    async def test_parked_messages_are_listed_in_position_order_by_stream(
        self, store: RelayStore
    ) -> None:
        await store.prepare(DEST)
        await store.park([parked(9, "order-2"), parked(5, sequence=3), parked(7)])
        assert [m.position for m in await store.parked(DEST)] == [5, 7, 9]
        assert await store.parked(DEST, "order-1") == [parked(5, sequence=3), parked(7)]
        assert await store.parked(OTHER) == []

    async def test_parking_a_message_again_keeps_the_first(self, store: RelayStore) -> None:
        await store.prepare(DEST)
        await store.park([parked(5, sequence=3)])
        await store.park([parked(5, sequence=None)])
        assert await store.parked(DEST) == [parked(5, sequence=3)]

    async def test_release_forgets_messages_and_raises_the_sequence_together(
        self, store: RelayStore
    ) -> None:
        await store.prepare(DEST)
        await store.advance(DEST, position=40, sequence=12)
        await store.park([parked(5, sequence=3), parked(7), parked(9, "order-2")])
        await store.release(DEST, [5, 7], sequence=14)
        assert [m.position for m in await store.parked(DEST)] == [9]
        assert await store.checkpoint(DEST) == RelayCheckpoint(DEST, 40, 14)
        await store.release(DEST, [9])
        assert await store.parked(DEST) == []
        assert await store.checkpoint(DEST) == RelayCheckpoint(DEST, 40, 14)


class DurableRelayStoreContract(RelayStoreContract):
    """The contract, plus durability: for stores that keep their data across a restart."""

    async def reopen(self, store: RelayStore) -> RelayStore:
        raise NotImplementedError

    async def test_checkpoints_and_parked_messages_survive_a_restart(
        self, store: RelayStore
    ) -> None:
        await store.prepare(DEST)
        await store.advance(DEST, position=40, sequence=12)
        await store.park([parked(5, sequence=3)])
        again = await self.reopen(store)
        try:
            assert await again.prepare(DEST) == RelayCheckpoint(DEST, 40, 12)
            assert await again.parked(DEST) == [parked(5, sequence=3)]
        finally:
            await again.close()

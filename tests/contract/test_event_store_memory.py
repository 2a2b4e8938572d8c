"""The in-memory event store passes the EventStore contract (durability skipped)."""

from __future__ import annotations

from twofold.adapters.memory.event_store import InMemoryEventStore
from twofold.adapters.memory.idempotency import InMemoryIdempotencyStore
from twofold.application.ports import EventStore, IdempotencyStore
from twofold.testing import EventStoreContract


class TestInMemoryEventStore(EventStoreContract):
    async def make_store(self) -> EventStore:
        return InMemoryEventStore()

    async def make_idempotency_store(self, store: EventStore) -> IdempotencyStore:
        assert isinstance(store, InMemoryEventStore)
        return InMemoryIdempotencyStore(store)

"""The PostgreSQL event store passes the EventStore contract."""

from __future__ import annotations

import pytest

from twofold.adapters.postgres import PostgresEventStore, PostgresIdempotencyStore
from twofold.application.ports import EventStore, IdempotencyStore
from twofold.testing import EventStoreContract

pytestmark = pytest.mark.postgres


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _place(self, postgres_url: str, pg_schema: str) -> None:
        self.url = postgres_url
        self.schema = pg_schema

    async def make_store(self) -> EventStore:
        # A poll far above live_timeout: live events must arrive by notification.
        return await PostgresEventStore.open(self.url, schema=self.schema, poll_interval=60)

    async def make_idempotency_store(self, store: EventStore) -> IdempotencyStore:
        assert isinstance(store, PostgresEventStore)
        return PostgresIdempotencyStore.of(store)

    async def reopen(self, store: EventStore) -> EventStore:
        await store.close()
        return await PostgresEventStore.open(self.url, schema=self.schema, poll_interval=60)

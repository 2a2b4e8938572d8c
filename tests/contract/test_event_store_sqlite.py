"""The SQLite event store passes the EventStore contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from twofold.adapters.sqlite.event_store import SQLiteEventStore
from twofold.adapters.sqlite.idempotency import SQLiteIdempotencyStore
from twofold.application.ports import EventStore, IdempotencyStore
from twofold.testing import EventStoreContract


class TestSQLiteEventStore(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _place(self, tmp_path: Path) -> None:
        self.path = tmp_path / "events.db"

    async def make_store(self) -> EventStore:
        # A poll far above live_timeout: live events must arrive by notification.
        return await SQLiteEventStore.open(self.path, poll_interval=60)

    async def make_idempotency_store(self, store: EventStore) -> IdempotencyStore:
        assert isinstance(store, SQLiteEventStore)
        return SQLiteIdempotencyStore(store)

    async def reopen(self, store: EventStore) -> EventStore:
        await store.close()
        return await SQLiteEventStore.open(self.path, poll_interval=60)

"""The memory and SQLite relay stores pass the RelayStore contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from twofold.adapters.memory.relay_store import MemoryRelayStore
from twofold.adapters.sqlite.relay_store import SQLiteRelayStore
from twofold.application.relay.store import RelayStore
from twofold.testing.relay_store_contract import (
    DurableRelayStoreContract,
    RelayStoreContract,
)


class TestMemoryRelayStore(RelayStoreContract):
    async def make_store(self) -> RelayStore:
        return MemoryRelayStore()


class TestSQLiteRelayStore(DurableRelayStoreContract):
    @pytest.fixture(autouse=True)
    def _place(self, tmp_path: Path) -> None:
        self.path = tmp_path / "events.db"

    async def make_store(self) -> RelayStore:
        return await SQLiteRelayStore.open(self.path)

    async def reopen(self, store: RelayStore) -> RelayStore:
        await store.close()
        return await SQLiteRelayStore.open(self.path)


async def test_the_sqlite_relay_store_shares_a_file_with_the_event_store(tmp_path: Path) -> None:
    from twofold.adapters.sqlite.event_store import SQLiteEventStore
    from twofold.testing.event_store_contract import new_event

    events = await SQLiteEventStore.open(tmp_path / "events.db")
    relay = await SQLiteRelayStore.open(tmp_path / "events.db")
    try:
        await events.append("order-1", [new_event()], expected_version=0)
        await relay.prepare("d")
        await relay.advance("d", position=1, sequence=1)
        assert (await relay.checkpoint("d")).position == 1
        assert len(await events.read_all()) == 1
    finally:
        await relay.close()
        await events.close()

"""The PostgreSQL relay store passes the RelayStore contract, in a schema of the test's own."""

from __future__ import annotations

import pytest

from twofold.adapters.postgres.relay_store import PostgresRelayStore, open_postgres_relay_store
from twofold.application.relay.store import RelayStore
from twofold.testing.relay_store_contract import DurableRelayStoreContract


class TestPostgresRelayStore(DurableRelayStoreContract):
    @pytest.fixture(autouse=True)
    def _place(self, postgres_url: str, pg_schema: str) -> None:
        self.url = postgres_url
        self.schema = pg_schema

    async def make_store(self) -> RelayStore:
        return await PostgresRelayStore.open(self.url, schema=self.schema)

    async def reopen(self, store: RelayStore) -> RelayStore:
        await store.close()
        return await PostgresRelayStore.open(self.url, schema=self.schema)


async def test_the_url_names_the_schema(postgres_url: str, pg_schema: str) -> None:
    sep = "&" if "?" in postgres_url else "?"
    store = await open_postgres_relay_store(f"{postgres_url}{sep}schema={pg_schema}")
    try:
        await store.prepare("d")
        again = await PostgresRelayStore.open(postgres_url, schema=pg_schema)
        try:
            assert (await again.checkpoint("d")).destination == "d"
        finally:
            await again.close()
    finally:
        await store.close()

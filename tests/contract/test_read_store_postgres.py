"""The PostgreSQL read store passes the ReadStore contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from twofold.adapters.postgres.read_store import PostgresReadStore
from twofold.testing import ReadStoreContract

pytestmark = pytest.mark.postgres


class TestPostgresReadStore(ReadStoreContract):
    @pytest.fixture
    async def views(self, postgres_url: str, pg_schema: str) -> AsyncIterator[PostgresReadStore]:
        store = await PostgresReadStore.open(postgres_url, schema=pg_schema)
        yield store
        await store.close()

"""The SQLite read store passes the ReadStore contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from twofold.adapters.sqlite.read_store import SQLiteReadStore
from twofold.testing import ReadStoreContract


class TestSQLiteReadStore(ReadStoreContract):
    @pytest.fixture
    async def views(self, tmp_path: Path) -> AsyncIterator[SQLiteReadStore]:
        store = await SQLiteReadStore.open(tmp_path / "views.db")
        yield store
        await store.close()

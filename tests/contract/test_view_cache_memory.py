"""The in-memory view cache passes the ViewCache contract."""

from __future__ import annotations

from tests.contract.view_cache_contract import ViewCacheContract
from twofold.adapters.memory.cache import MemoryViewCache
from twofold.application.cache import ViewCache


class TestMemoryViewCache(ViewCacheContract):
    async def make_cache(self) -> ViewCache:
        return MemoryViewCache()

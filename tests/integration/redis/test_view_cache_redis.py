"""The Redis view cache passes the ViewCache contract, and keeps its TTLs."""

from __future__ import annotations

import pytest
import redis

from tests.contract.view_cache_contract import DOC, ViewCacheContract
from twofold.adapters.redis.cache import RedisViewCache
from twofold.application.cache import CacheSettings, Entry, StoreOutcome, ViewCache


class TestRedisViewCache(ViewCacheContract):
    @pytest.fixture(autouse=True)
    def _place(self, redis_url: str, namespace: str) -> None:
        self.url = redis_url
        self.namespace = namespace

    async def make_cache(self) -> ViewCache:
        return RedisViewCache.open(self.url, CacheSettings(namespace=self.namespace, timeout=30))


def _pttl(url: str, key: str) -> int:
    with redis.Redis.from_url(url) as client:
        return int(client.pttl(key))


async def test_answers_and_not_found_expire_after_their_own_ttls(
    redis_url: str, namespace: str
) -> None:
    settings = CacheSettings(namespace=namespace, ttl=120, not_found_ttl=3, timeout=30)
    cache = RedisViewCache.open(redis_url, settings)
    try:
        await cache.reset("orders", 1, 5)
        lookup = await cache.lookup(DOC)
        stored = await cache.store(DOC, Entry(b"{}", 5), ticket=lookup.ticket, generation=1)
        assert stored is StoreOutcome.STORED
        assert 3_000 < _pttl(redis_url, cache.slot_key(DOC, lookup.ticket.epoch)) <= 120_000
        missing = DOC.__class__("orders", "orders", "nobody")
        await cache.store(missing, Entry(None, 5), ticket=lookup.ticket, generation=1)
        assert 0 < _pttl(redis_url, cache.slot_key(missing, lookup.ticket.epoch)) <= 3_000
        # The projection's meta never expires: losing it would cost a new epoch.
        assert _pttl(redis_url, cache.meta_key("orders")) == -1
    finally:
        await cache.close()


async def test_a_lost_meta_record_starts_a_new_epoch(redis_url: str, namespace: str) -> None:
    cache = RedisViewCache.open(redis_url, CacheSettings(namespace=namespace, timeout=30))
    try:
        await cache.reset("orders", 1, 5)
        lookup = await cache.lookup(DOC)
        await cache.store(DOC, Entry(b"{}", 5), ticket=lookup.ticket, generation=1)
        with redis.Redis.from_url(redis_url) as client:
            client.delete(cache.meta_key("orders"))  # evicted, or deleted by hand
        again = await cache.lookup(DOC)
        assert again.entry is None
        assert again.ticket.epoch != lookup.ticket.epoch
        late = await cache.store(DOC, Entry(b"{}", 5), ticket=lookup.ticket, generation=1)
        assert late is StoreOutcome.MOVED
    finally:
        await cache.close()

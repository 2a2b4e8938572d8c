"""The Redis view cache passes the ViewCache contract, and keeps its TTLs."""

from __future__ import annotations

import asyncio

import pytest
import redis

from tests.contract.view_cache_contract import DOC, ViewCacheContract
from tests.integration.redis.conftest import OwnRedis
from twofold.adapters.redis.cache import RedisViewCache
from twofold.application.cache import CacheSettings, Entry, Slot, StoreOutcome, ViewCache


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


async def test_concurrent_lookups_share_a_pipeline_and_each_gets_its_own_answer(
    redis_url: str, namespace: str
) -> None:
    cache = RedisViewCache.open(redis_url, CacheSettings(namespace=namespace, timeout=30))
    try:
        await cache.reset("orders", 1, 5)
        slots = [Slot("orders", "orders", f"o-{i}") for i in range(20)]
        for i, slot in enumerate(slots[:10]):
            lookup = await cache.lookup(slot)
            await cache.store(slot, Entry(b"%d" % i, 5), ticket=lookup.ticket, generation=1)
        lookups = await asyncio.gather(*(cache.lookup(slot) for slot in slots))
        assert [lookup.entry for lookup in lookups] == [
            *(Entry(b"%d" % i, 5) for i in range(10)),
            *([None] * 10),
        ]
    finally:
        await cache.close()


async def test_lookups_work_again_after_redis_lost_its_scripts(own_redis: OwnRedis) -> None:
    cache = RedisViewCache.open(own_redis.url, CacheSettings(namespace="flush", timeout=30))
    try:
        await cache.reset("orders", 1, 5)
        assert (await cache.lookup(DOC)).entry is None
        own_redis.cli("SCRIPT", "FLUSH")  # as after a restart
        assert (await cache.lookup(DOC)).ticket.through == 5
        lookups = await asyncio.gather(cache.lookup(DOC), cache.lookup(DOC))
        assert [lookup.ticket.through for lookup in lookups] == [5, 5]
    finally:
        await cache.close()


def test_cache_urls_carry_the_settings_and_refuse_unknown_options() -> None:
    from twofold.adapters.redis.cache import settings_from_url
    from twofold.errors import ConfigurationError

    url, settings = settings_from_url(
        "redis://cache:6379/2?namespace=shop&ttl=60&local_entries=5000&lists=orders,posts"
        "&socket_keepalive=true"
    )
    assert url == "redis://cache:6379/2?socket_keepalive=true"
    assert (settings.namespace, settings.ttl, settings.local_entries) == ("shop", 60.0, 5000)
    assert settings.lists == frozenset({"orders", "posts"})
    with pytest.raises(ConfigurationError, match="'tll' is not understood"):
        settings_from_url("redis://cache:6379/0?tll=60")
    with pytest.raises(ConfigurationError, match="ttl='soon' must be a number"):
        settings_from_url("redis://cache:6379/0?ttl=soon")
    with pytest.raises(ConfigurationError, match="must be a number of seconds above 0"):
        settings_from_url("redis://cache:6379/0?ttl=-1")
    with pytest.raises(ConfigurationError, match="is not a Redis URL"):
        settings_from_url("memcached://cache:11211")

"""The in-process cache of one worker is invalidated by a commit made in another, through
Redis pub/sub: two CachedViews with connections of their own stand for two processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis
import redis.asyncio as aioredis

from tests.integration.redis.world import open_world
from twofold.adapters.redis.cache import RedisViewCache
from twofold.adapters.sqlite.cache_reads import SQLitePositionedReader
from twofold.adapters.sqlite.read_store import SQLiteReadStore
from twofold.application.cache import CacheSettings, Slot
from twofold.application.cache_views import CachedViews


async def test_a_commit_drops_the_document_from_another_workers_local_cache(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    settings = CacheSettings(namespace=namespace, timeout=30, local_entries=100)
    world = await open_world("sqlite", redis_url=redis_url, settings=settings, tmp_path=tmp_path)
    # Another worker: no runner and no position tracker, only the cache's notices.
    store = world.store
    assert isinstance(store, SQLiteReadStore)
    loader = SQLitePositionedReader(store)
    cache = RedisViewCache.open(redis_url, settings)
    other = CachedViews(store, loader, cache, owners={"orders": "orders"}, settings=settings)
    try:
        await other.start()
        assert other.local is not None
        async with asyncio.timeout(30):  # a deadline, not a measurement
            await other.local.ready()
        await world.commit(1, **{"o-1": {"n": 1}})
        assert await other.get("orders", "o-1") == {"n": 1}
        assert await other.get("orders", "o-1") == {"n": 1}
        assert other.metrics.local_hits == 1

        await world.commit(2, **{"o-1": {"n": 2}})
        async with asyncio.timeout(30):
            await other.local.reached("orders", 2)
        assert await other.get("orders", "o-1") == {"n": 2}
        assert await other.get("orders", "o-1") == {"n": 2}
        assert other.metrics.local_hits == 2
    finally:
        await cache.close()
        await loader.close()
        await world.close()


async def test_a_reset_returns_once_every_in_process_cache_dropped_the_projection(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    """A rebuild's switch follows the reset: by then no worker may hold the old copy."""
    settings = CacheSettings(namespace=namespace, timeout=30, local_entries=100)
    world = await open_world("sqlite", redis_url=redis_url, settings=settings, tmp_path=tmp_path)
    store = world.store
    assert isinstance(store, SQLiteReadStore)
    loader = SQLitePositionedReader(store)
    cache = RedisViewCache.open(redis_url, settings)
    other = CachedViews(store, loader, cache, owners={"orders": "orders"}, settings=settings)
    try:
        await other.start()
        assert other.local is not None
        async with asyncio.timeout(30):  # a deadline, not a measurement
            await other.local.ready()
        await world.commit(1, **{"o-1": {"n": 1}})
        assert await other.get("orders", "o-1") == {"n": 1}
        assert await other.get("orders", "o-1") == {"n": 1}
        assert other.metrics.local_hits == 1 and len(other.local) == 1

        await world.cache.reset("orders", 2, 1)
        assert len(other.local) == 0
        assert other.local.get(Slot("orders", "orders", "o-1"), 0) is None
        with redis.Redis.from_url(redis_url) as client:
            assert not list(client.scan_iter(match=f"{{{namespace}:orders}}:ack:*"))
    finally:
        await cache.close()
        await loader.close()
        await world.close()


async def test_a_reset_goes_on_when_a_listener_never_acknowledges(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    settings = CacheSettings(namespace=namespace, timeout=30)
    cache = RedisViewCache.open(redis_url, settings)
    mute = aioredis.Redis.from_url(redis_url)
    listener = mute.pubsub()
    try:
        await listener.subscribe(cache.channel)
        async with asyncio.timeout(30):  # a deadline for a hang, not a measurement
            await cache.reset("orders", 1, 5)
        lookup = await cache.lookup(Slot("orders", "orders", "o-1"))
        assert (lookup.ticket.generation, lookup.ticket.through) == (1, 5)
    finally:
        await listener.aclose()  # type: ignore[no-untyped-call]
        await mute.aclose()
        await cache.close()

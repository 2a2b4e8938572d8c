"""CachedViews over in-memory fakes: hits, single flight, positions, failure, local cache."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.unit.cache_fakes import FakeViews, FlakyCache
from twofold.adapters.memory.cache import MemoryViewCache
from twofold.application.cache import CacheSettings, CacheState, Lost
from twofold.application.cache_invalidation import CacheInvalidator
from twofold.application.cache_views import CachedViews
from twofold.application.failure import Backoff, CircuitBreaker
from twofold.application.positions import PositionTracker

OWNERS = {"orders": "orders"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def cached(
    store: FakeViews,
    cache: FlakyCache | MemoryViewCache,
    *,
    positions: PositionTracker | None = None,
    **settings: object,
) -> CachedViews:
    options: dict[str, object] = {"namespace": "t", "timeout": 30.0, **settings}
    return CachedViews(
        store,
        store,
        cache,
        owners=OWNERS,
        settings=CacheSettings(**options),  # type: ignore[arg-type]
        positions=positions,
    )


async def committed(
    store: FakeViews,
    invalidator: CacheInvalidator,
    position: int,
    **documents: dict[str, Any] | None,
) -> None:
    after = store.position
    touched = store.commit(position, **documents)
    await invalidator.committed(
        "orders", store.generation, after=after, checkpoint=position, touched=touched
    )


@pytest.fixture
def store() -> FakeViews:
    views = FakeViews()
    views.commit(1, **{"o-1": {"v": 1}})
    return views


async def test_second_read_is_answered_by_the_cache(store: FakeViews) -> None:
    views = cached(store, MemoryViewCache())
    assert await views.get("orders", "o-1") == {"v": 1}
    assert await views.get_json("orders", "o-1") == b'{"v":1}'
    assert store.loads == 1
    assert (views.metrics.misses, views.metrics.hits, views.metrics.stores) == (1, 1, 1)


async def test_not_found_is_cached_too(store: FakeViews) -> None:
    views = cached(store, MemoryViewCache())
    assert await views.get("orders", "nobody") is None
    assert await views.get("orders", "nobody") is None
    assert store.loads == 1


async def test_many_readers_missing_at_once_load_the_key_once(store: FakeViews) -> None:
    views = cached(store, MemoryViewCache())
    store.hold()
    readers = [asyncio.create_task(views.get_json("orders", "o-1")) for _ in range(20)]
    await store.loaded.wait()  # the others were scheduled first and joined the flight
    store.release()
    assert await asyncio.gather(*readers) == [b'{"v":1}'] * 20
    assert store.loads == 1


async def test_a_min_position_past_the_entry_is_answered_by_the_read_store(
    store: FakeViews,
) -> None:
    cache = MemoryViewCache()
    views = cached(store, cache)
    invalidator = CacheInvalidator(cache)
    await invalidator.reset("orders", 1, 1)
    await views.get("orders", "o-1")  # cached at 1
    store.commit(2, **{"o-1": {"v": 2}})  # committed, its invalidation not yet delivered
    assert await views.at_least(1).get("orders", "o-1") == {"v": 1}
    assert await views.at_least(2).get("orders", "o-1") == {"v": 2}


async def test_entries_older_than_the_position_this_process_knows_are_not_served(
    store: FakeViews,
) -> None:
    cache = MemoryViewCache()
    positions = PositionTracker()
    positions.advance("orders", 1)
    views = cached(store, cache, positions=positions)
    await CacheInvalidator(cache).reset("orders", 1, 1)
    await views.get("orders", "o-1")
    store.commit(2, **{"o-1": {"v": 2}})
    positions.advance("orders", 2)  # the runner advanced; the invalidation is late
    assert await views.get("orders", "o-1") == {"v": 2}


async def test_the_refill_race_does_not_store_the_outdated_document(store: FakeViews) -> None:
    cache = MemoryViewCache()
    views = cached(store, cache)
    invalidator = CacheInvalidator(cache)
    await invalidator.reset("orders", 1, 1)
    store.hold()
    slow = asyncio.create_task(views.get("orders", "o-1"))
    await store.loaded.wait()  # the slow reader loaded v1 at position 1 and waits
    await committed(store, invalidator, 2, **{"o-1": {"v": 2}})
    store.release()
    assert await slow == {"v": 1}  # it answers what it read, but does not store it
    assert views.metrics.refused_older == 1
    assert await views.get("orders", "o-1") == {"v": 2}


async def test_a_cache_that_refuses_connections_is_bypassed_without_errors(
    store: FakeViews,
) -> None:
    cache = FlakyCache()
    cache.down = True
    views = cached(store, cache, failure_threshold=2)
    for _ in range(5):
        assert await views.get("orders", "o-1") == {"v": 1}
    assert cache.calls == 2  # then the breaker keeps it out of the path
    assert views.metrics.fallbacks == 5
    status = views.status()
    assert status.state is CacheState.DEGRADED
    assert "Connection refused" in status.detail


async def test_a_cache_that_hangs_times_out_to_the_read_store(store: FakeViews) -> None:
    cache = FlakyCache()
    cache.stuck = True
    views = cached(store, cache, timeout=0.01, failure_threshold=1)
    assert await views.get("orders", "o-1") == {"v": 1}
    assert views.metrics.errors == 1
    assert views.status().state is CacheState.DEGRADED


async def test_the_cache_is_used_again_once_it_answers(store: FakeViews) -> None:
    cache = FlakyCache()
    clock = Clock()
    breaker = CircuitBreaker(
        failure_threshold=1,
        backoff=Backoff(initial=1.0, maximum=1.0, jitter=0),
        clock=clock,
        single_trial=True,
    )
    views = CachedViews(
        store,
        store,
        cache,
        owners=OWNERS,
        settings=CacheSettings(timeout=30.0),
        breaker=breaker,
    )
    cache.down = True
    await views.get("orders", "o-1")
    cache.down = False
    await views.get("orders", "o-1")
    assert views.metrics.hits == 0  # still open: not even asked
    clock.now += 1.0
    await views.get("orders", "o-1")  # the trial: a miss that stores
    await views.get("orders", "o-1")
    assert views.metrics.hits == 1
    assert views.status().state is CacheState.UP


async def test_inline_projections_and_unknown_collections_read_the_store(
    store: FakeViews,
) -> None:
    positions = PositionTracker()
    positions.mark_inline("orders")
    cache = FlakyCache()
    views = cached(store, cache, positions=positions)
    assert await views.get("orders", "o-1") == {"v": 1}
    views = cached(store, cache)
    store.docs[("notes", "n-1")] = b"{}"
    assert await views.get("notes", "n-1") == {}
    assert cache.calls == 0
    assert store.plain_reads == 2


async def test_list_answers_are_cached_for_listed_collections_until_touched(
    store: FakeViews,
) -> None:
    cache = MemoryViewCache()
    views = cached(store, cache, lists=frozenset({"orders"}))
    invalidator = CacheInvalidator(cache)
    await invalidator.reset("orders", 1, 1)
    assert await views.find("orders", where={"v": 1}) == [{"v": 1}]
    assert await views.find("orders", where={"v": 1}) == [{"v": 1}]
    assert await views.count("orders") == 1
    assert await views.count("orders") == 1
    assert store.loads == 2
    await committed(store, invalidator, 2, **{"o-2": {"v": 1}})
    assert await views.find("orders", where={"v": 1}) == [{"v": 1}, {"v": 1}]
    assert await views.count("orders") == 2
    assert store.loads == 4


async def test_list_answers_of_unlisted_collections_are_not_cached(store: FakeViews) -> None:
    views = cached(store, MemoryViewCache())
    await views.find("orders")
    await views.count("orders")
    assert store.loads == 0 and store.plain_reads == 2


# -- the in-process cache -----------------------------------------------------------------


async def test_hot_documents_are_answered_in_process(store: FakeViews) -> None:
    cache = MemoryViewCache()
    views = cached(store, cache, local_entries=10)
    await views.start()
    await CacheInvalidator(cache).reset("orders", 1, 1)
    await views.get("orders", "o-1")
    await views.get("orders", "o-1")
    await views.get("orders", "o-1")
    assert (views.metrics.misses, views.metrics.local_hits, views.metrics.hits) == (1, 2, 0)


async def test_a_commit_in_another_process_drops_the_document_in_every_process(
    store: FakeViews,
) -> None:
    shared = MemoryViewCache()
    worker_a = cached(store, shared, local_entries=10)
    worker_b = cached(store, shared, local_entries=10)
    await worker_a.start()
    await worker_b.start()
    invalidator = CacheInvalidator(shared)  # in the process that runs the projection
    await invalidator.reset("orders", 1, 1)
    for worker in (worker_a, worker_b):
        assert await worker.get("orders", "o-1") == {"v": 1}
        assert await worker.get("orders", "o-1") == {"v": 1}
        assert worker.metrics.local_hits == 1
    await committed(store, invalidator, 2, **{"o-1": {"v": 2}})
    assert await worker_a.get("orders", "o-1") == {"v": 2}
    assert await worker_b.get("orders", "o-1") == {"v": 2}


async def test_nothing_is_answered_in_process_while_notices_may_be_missed(
    store: FakeViews,
) -> None:
    cache = MemoryViewCache()
    views = cached(store, cache, local_entries=10)
    await views.start()
    await CacheInvalidator(cache).reset("orders", 1, 1)
    await views.get("orders", "o-1")
    assert views.local is not None and len(views.local) == 1
    views.local.notice(Lost())
    await views.get("orders", "o-1")
    assert views.metrics.local_hits == 0
    assert len(views.local) == 0


async def test_the_local_cache_keeps_at_most_its_size(store: FakeViews) -> None:
    cache = MemoryViewCache()
    views = cached(store, cache, local_entries=2)
    await views.start()
    await CacheInvalidator(cache).reset("orders", 1, 1)
    for key in ("a", "b", "c"):
        await views.get("orders", key)
    assert views.local is not None and len(views.local) == 2


def test_settings_refuse_what_cannot_work() -> None:
    from twofold.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="namespace"):
        CacheSettings(namespace="a:b")
    with pytest.raises(ConfigurationError, match="ttl must be a number of seconds above 0"):
        CacheSettings(ttl=0)
    with pytest.raises(ConfigurationError, match="local_entries"):
        CacheSettings(local_entries=-1)

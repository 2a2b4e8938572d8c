"""The App's cache as one part: one health from its reads and its invalidations."""

from __future__ import annotations

from twofold.adapters.prometheus import PrometheusMetrics
from twofold.application.cache import CacheSettings, CacheState
from twofold.application.cache_invalidation import CacheInvalidator
from twofold.application.cache_views import CachedViews
from twofold.application.caching import Caching

from .cache_fakes import FakeViews, FlakyCache


def caching(cache: FlakyCache, views: FakeViews) -> Caching:
    settings = CacheSettings(failure_threshold=1, reset_after=60)
    reads = CachedViews(views, views, cache, owners={"orders": "orders"}, settings=settings)
    return Caching(
        reads, CacheInvalidator(cache, metrics=reads.metrics, retry_after=60, max_retry_after=60)
    )


async def test_up_while_reads_and_invalidations_reach_the_cache() -> None:
    views, cache = FakeViews(), FlakyCache()
    part = caching(cache, views)
    touched = views.commit(1, a={"n": 1})
    await part.invalidator.committed("orders", 1, after=0, checkpoint=1, touched=touched)
    assert await part.views.get("orders", "a") == {"n": 1}
    assert part.status().state is CacheState.UP
    assert part.metrics.invalidations == 1 and part.metrics.loads == 1
    await part.close()


async def test_degraded_when_reads_bypass_the_cache_and_when_invalidations_wait() -> None:
    views, cache = FakeViews(), FlakyCache()
    part = caching(cache, views)
    cache.down = True
    touched = views.commit(1, a={"n": 1})
    await part.invalidator.committed("orders", 1, after=0, checkpoint=1, touched=touched)
    waiting = part.status()
    assert waiting.state is CacheState.DEGRADED
    assert "invalidations of orders wait" in waiting.detail
    assert await part.views.get("orders", "a") == {"n": 1}  # answered by the read store
    both = part.status()
    assert both.state is CacheState.DEGRADED
    assert "answers come from the read store" in both.detail
    assert "invalidations of orders wait" in both.detail
    cache.down = False
    assert await part.invalidator.flush()
    assert "invalidations" not in part.status().detail
    await part.close()


async def test_counters_reach_the_metrics_they_are_recorded_to() -> None:
    views, cache = FakeViews(), FlakyCache()
    part = caching(cache, views)
    metrics = PrometheusMetrics()
    part.metrics.record_to(metrics)
    views.commit(1, a={"n": 1})
    await part.views.get("orders", "a")
    await part.views.get("orders", "a")
    cache.down = True
    await part.views.get("orders", "a")
    recorded = {
        sample.name: sample.value
        for family in await metrics.snapshot()
        for sample in family.samples
        if sample.name.startswith("twofold_cache_")
    }
    assert part.metrics.as_dict() == {
        "hits": 1,
        "local_hits": 0,
        "misses": 1,
        "loads": 2,
        "stores": 1,
        "refused_older": 0,
        "invalidations": 0,
        "fallbacks": 1,
        "errors": 1,
    }
    for name, count in part.metrics.as_dict().items():
        assert recorded[f"twofold_cache_{name}_total"] == count, (name, recorded)
    await part.close()

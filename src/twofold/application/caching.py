"""An App's cache, as one part: the reader in front of the views and the invalidator
behind the runners, with one health and one set of counters.

``bootstrap`` builds it when ``TWOFOLD_CACHE`` is set: the QueryBus reads through
``views`` (a CachedViews), every runner hands its commits to ``invalidator``, and the App
reports ``status()`` on ``/health`` and closes it on ``App.close``.
"""

from __future__ import annotations

from twofold.application.cache import CacheMetrics, CacheSettings, CacheState, CacheStatus
from twofold.application.cache_invalidation import CacheInvalidator
from twofold.application.cache_views import CachedViews

__all__ = ["Caching"]


class Caching:
    """The cache in front of an App's views: UP, or DEGRADED (never DOWN)."""

    def __init__(self, views: CachedViews, invalidator: CacheInvalidator) -> None:
        self.views = views
        self.invalidator = invalidator

    @property
    def settings(self) -> CacheSettings:
        return self.views.settings

    @property
    def metrics(self) -> CacheMetrics:
        """Counters since this process started (reads and invalidations share them)."""
        return self.views.metrics

    def status(self) -> CacheStatus:
        """DEGRADED while reads bypass the cache or invalidations wait for it; UP otherwise.
        Either way every query answers, from the read store when the cache cannot."""
        reads, invalidations = self.views.status(), self.invalidator.status()
        if reads.state is CacheState.UP and invalidations.state is CacheState.UP:
            return CacheStatus(CacheState.UP, reads.detail)
        details = [s.detail for s in (reads, invalidations) if s.state is not CacheState.UP]
        return CacheStatus(CacheState.DEGRADED, "; ".join(details))

    async def close(self) -> None:
        """Stop delivering invalidations and close the cache's connections."""
        await self.invalidator.close()
        await self.views.cache.close()
        close = getattr(self.views.loader, "close", None)
        if close is not None:
            await close()

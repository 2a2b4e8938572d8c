"""CachedViews: a ViewReader that answers from the cache when the cache is fresh enough.

The QueryBus hands it to query handlers in place of the read store; handlers do not change::

    views = CachedViews(read_store, loader, cache, owners=owners_of(projections),
                        settings=settings, positions=tracker)
    await views.start()                      # the in-process cache's notices, if any
    bus = QueryBus(views, tracker)

For a document of a cached collection (``owners``: collection -> projection):

1. the in-process cache (optional), then the shared cache, are asked for an entry that
   reflects at least the position the reader *needs*: the larger of the query's
   ``min_position`` (``at_least``) and the projection's position known to this process
   (``positions``), so an answer is never older than a view this process has seen;
2. on a miss, one task per key loads it from the read store with the projection's
   checkpoint read in the same snapshot (others that miss meanwhile wait for that load),
   and stores it in the shared cache, which refuses it if a newer state is known;
3. when the cache fails or is slow (``settings.timeout``), the answer comes from the read
   store and the breaker keeps the cache out of the path until it answers again: callers
   see no error, ``status()`` says DEGRADED.

List answers (``find``, ``count``) are cached for the collections in ``settings.lists``:
any commit that touches the collection makes them stale, so they pay only for
collections read far more often than written. Collections not in ``owners``, and
projections applied inline (``positions.is_inline``), are read straight from the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from twofold.application.cache import (
    CacheMetrics,
    CacheSettings,
    CacheState,
    CacheStatus,
    Entry,
    Loaded,
    Lookup,
    PositionedReader,
    Slot,
    StoreOutcome,
    Ticket,
    ViewCache,
)
from twofold.application.cache_local import LocalCache
from twofold.application.failure import Backoff, BreakerState, CircuitBreaker
from twofold.application.positions import PositionTracker
from twofold.application.projections import Projection
from twofold.application.views import Document, SortBy, ViewReader
from twofold.codec import decode_json, encode_json

__all__ = ["CachedViews", "cache_breaker", "owners_of"]

log = logging.getLogger("twofold.cache")

Load = Callable[[], Awaitable[Loaded]]


def cache_breaker(settings: CacheSettings) -> CircuitBreaker:
    """The breaker in front of the cache: ``failure_threshold`` failures in a row open it;
    it tries again after ``reset_after`` seconds (growing while trials fail, up to 30 s),
    one request at a time, so a hanging cache never holds many requests at once."""
    return CircuitBreaker(
        failure_threshold=settings.failure_threshold,
        backoff=Backoff(initial=settings.reset_after, maximum=max(30.0, settings.reset_after)),
        single_trial=True,
    )


def owners_of(projections: Iterable[Projection]) -> dict[str, str]:
    """``{collection: projection}`` for the collections of ``projections``."""
    return {c.name: p.name for p in projections for c in p.collections}


class CachedViews:
    """The ViewReader port, answered through a ViewCache in front of a read store."""

    def __init__(
        self,
        views: ViewReader,
        loader: PositionedReader,
        cache: ViewCache,
        *,
        owners: Mapping[str, str],
        settings: CacheSettings | None = None,
        positions: PositionTracker | None = None,
        metrics: CacheMetrics | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.views = views
        self.loader = loader
        self.cache = cache
        self.settings = settings = settings if settings is not None else CacheSettings()
        self.positions = positions
        self.metrics = metrics if metrics is not None else CacheMetrics()
        self.breaker = breaker or cache_breaker(settings)
        self.local = LocalCache(settings.local_entries) if settings.local_entries else None
        self._owners = dict(owners)
        self._epochs: dict[str, str] = {}
        self._flights: dict[Slot, asyncio.Future[Loaded]] = {}

    async def start(self) -> None:
        """Start receiving the shared cache's notices (only needed for the local cache)."""
        if self.local is not None:
            try:
                await self.cache.watch(self.local.notice)
            except Exception as exc:  # the cache may be away at start: no local cache then
                log.warning("cache notices unavailable, in-process cache off: %s", exc)

    def at_least(self, min_position: int) -> ViewReader:
        """A reader whose answers reflect at least ``min_position`` (cached or not)."""
        return _AtLeast(self, min_position)

    # -- the ViewReader port --------------------------------------------------------------

    async def get(self, collection: str, key: str) -> Document | None:
        return await self._get(collection, key, 0)

    async def get_json(self, collection: str, key: str) -> bytes | None:
        return await self._get_json(collection, key, 0)

    async def find(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
        order_by: Sequence[SortBy] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Document]:
        return await self._find(collection, where, between, order_by, limit, offset, 0)

    async def count(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> int:
        return await self._count(collection, where, between, 0)

    # -- health ---------------------------------------------------------------------------

    def status(self) -> CacheStatus:
        """UP, or DEGRADED while the cache is kept out of the path; never DOWN."""
        state = self.breaker.state
        if state is BreakerState.CLOSED:
            return CacheStatus(CacheState.UP, "answers come from the cache when fresh")
        return CacheStatus(
            CacheState.DEGRADED,
            f"the cache failed ({self.breaker.status().last_error}); answers come from the "
            "read store until it answers again",
        )

    # -- reading --------------------------------------------------------------------------

    def _projection(self, collection: str) -> str | None:
        projection = self._owners.get(collection)
        if projection is None:
            return None
        if self.positions is not None and self.positions.is_inline(projection):
            return None  # committed with the append: invalidation comes from no runner
        return projection

    async def _get(self, collection: str, key: str, floor: int) -> Document | None:
        body = await self._get_json(collection, key, floor)
        return None if body is None else decode_json(body)

    async def _get_json(self, collection: str, key: str, floor: int) -> bytes | None:
        projection = self._projection(collection)
        if projection is None:
            return await self.views.get_json(collection, key)
        entry = await self._answer(
            Slot(projection, collection, key),
            floor,
            lambda: self.loader.load_json(projection, collection, key),
        )
        return entry.body

    async def _find(
        self,
        collection: str,
        where: Mapping[str, Any] | None,
        between: Mapping[str, tuple[Any, Any]] | None,
        order_by: Sequence[SortBy],
        limit: int | None,
        offset: int,
        floor: int,
    ) -> list[Document]:
        projection = self._projection(collection)
        if projection is None or collection not in self.settings.lists:
            return await self.views.find(
                collection,
                where=where,
                between=between,
                order_by=order_by,
                limit=limit,
                offset=offset,
            )
        name = _query_name("find", where, between, order_by, limit, offset)
        entry = await self._answer(
            Slot(projection, collection, name, is_list=True),
            floor,
            lambda: self.loader.load_find(
                projection,
                collection,
                where=where,
                between=between,
                order_by=order_by,
                limit=limit,
                offset=offset,
            ),
        )
        assert entry.body is not None
        return decode_json(entry.body)  # type: ignore[no-any-return]

    async def _count(
        self,
        collection: str,
        where: Mapping[str, Any] | None,
        between: Mapping[str, tuple[Any, Any]] | None,
        floor: int,
    ) -> int:
        projection = self._projection(collection)
        if projection is None or collection not in self.settings.lists:
            return await self.views.count(collection, where=where, between=between)
        name = _query_name("count", where, between, (), None, 0)
        entry = await self._answer(
            Slot(projection, collection, name, is_list=True),
            floor,
            lambda: self.loader.load_count(projection, collection, where=where, between=between),
        )
        assert entry.body is not None
        return int(entry.body)

    def _need(self, projection: str, floor: int) -> int:
        if self.positions is None:
            return floor
        return max(floor, self.positions.position(projection))

    async def _answer(self, slot: Slot, floor: int, load: Load) -> Entry:
        need = self._need(slot.projection, floor)
        local = self.local if not slot.is_list else None
        if local is not None:
            hit = local.get(slot, need)
            if hit is not None:
                self.metrics.add("local_hits")
                return hit
        lookup = await self._lookup(slot)
        if lookup is not None:
            fresh = lookup.fresh(need)
            if fresh is not None:
                self.metrics.add("hits")
                if local is not None:
                    local.put(slot, fresh, lookup.ticket.epoch)
                return fresh
            self.metrics.add("misses")
        return await self._load(slot, need, load, None if lookup is None else lookup.ticket)

    async def _lookup(self, slot: Slot) -> Lookup | None:
        if not self.breaker.allow():
            self.metrics.add("fallbacks")
            return None
        period = None if self.local is None else self.local.listening
        try:
            async with asyncio.timeout(self.settings.timeout):
                lookup = await self.cache.lookup(slot, epoch=self._epochs.get(slot.projection))
        except Exception as exc:
            self._failed(exc)
            self.metrics.add("fallbacks")
            return None
        self.breaker.success()
        self._epochs[slot.projection] = lookup.ticket.epoch
        if self.local is not None:
            self.local.sync(slot.projection, lookup.ticket, period)
        return lookup

    async def _load(self, slot: Slot, need: int, load: Load, ticket: Ticket | None) -> Entry:
        flight = self._flights.get(slot)
        if flight is not None:
            try:
                loaded = await asyncio.shield(flight)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not flight.cancelled() or (task is not None and task.cancelling()):
                    raise
                loaded = await self._load_once(load)  # the loading task was cancelled
            if loaded.position < need:  # it read before this reader's view moved on
                loaded = await self._load_once(load)
            return Entry(loaded.body, loaded.position)
        flight = asyncio.get_running_loop().create_future()
        self._flights[slot] = flight
        try:
            loaded = await self._load_once(load)
        except asyncio.CancelledError:
            flight.cancel()
            raise
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # those waiting get it; nobody waiting is fine too
            raise
        else:
            flight.set_result(loaded)
        finally:
            del self._flights[slot]
        if ticket is not None:
            await self._store(slot, loaded, ticket)
        return Entry(loaded.body, loaded.position)

    async def _load_once(self, load: Load) -> Loaded:
        loaded = await load()
        self.metrics.add("loads")
        return loaded

    async def _store(self, slot: Slot, loaded: Loaded, ticket: Ticket) -> None:
        if not self.breaker.allow():
            return
        entry = Entry(loaded.body, loaded.position)
        try:
            async with asyncio.timeout(self.settings.timeout):
                outcome = await self.cache.store(
                    slot, entry, ticket=ticket, generation=loaded.generation
                )
        except Exception as exc:
            self._failed(exc)
            return
        self.breaker.success()
        if outcome is StoreOutcome.STORED:
            self.metrics.add("stores")
            if self.local is not None and not slot.is_list:
                self.local.put(slot, entry, ticket.epoch)
        else:
            self.metrics.add("refused_older")

    def _failed(self, exc: BaseException) -> None:
        opened = self.breaker.status().opened
        self.breaker.failure(exc)
        self.metrics.add("errors")
        status = self.breaker.status()
        if status.opened != opened:
            log.warning(
                "cache failed (%s): answering from the read store for %.1f s before trying "
                "it again",
                status.last_error,
                status.retry_in,
            )


class _AtLeast:
    """CachedViews, answering at least as fresh as one position."""

    def __init__(self, views: CachedViews, floor: int) -> None:
        self._views = views
        self._floor = floor

    async def get(self, collection: str, key: str) -> Document | None:
        return await self._views._get(collection, key, self._floor)

    async def get_json(self, collection: str, key: str) -> bytes | None:
        return await self._views._get_json(collection, key, self._floor)

    async def find(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
        order_by: Sequence[SortBy] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Document]:
        return await self._views._find(
            collection, where, between, order_by, limit, offset, self._floor
        )

    async def count(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> int:
        return await self._views._count(collection, where, between, self._floor)


def _query_name(
    kind: str,
    where: Mapping[str, Any] | None,
    between: Mapping[str, tuple[Any, Any]] | None,
    order_by: Sequence[SortBy],
    limit: int | None,
    offset: int,
) -> str:
    """A short stable name for a list query (its parameters, hashed)."""
    shape = encode_json(
        [
            sorted((where or {}).items()),
            sorted((f, list(r)) for f, r in (between or {}).items()),
            [list(term) for term in order_by],
            limit,
            offset,
        ]
    )
    return f"{kind}:{hashlib.blake2b(shape, digest_size=12).hexdigest()}"

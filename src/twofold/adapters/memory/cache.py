"""An in-memory ViewCache: the rules of ``twofold.application.cache`` in plain Python.

For tests and for one process that wants the cache's exactness without Redis. Several
``CachedViews`` sharing one instance behave like processes sharing one Redis; notices are
delivered to every watcher at once.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from twofold.application.cache import (
    CacheNotice,
    Entry,
    Invalidated,
    Invalidation,
    Listening,
    Lookup,
    Reset,
    Slot,
    StoreOutcome,
    Ticket,
)

__all__ = ["MemoryViewCache"]

_TOMBSTONE = "t"
_VALUE = "v"
_MISSING = "n"


class _Meta:
    __slots__ = ("epoch", "generation", "through", "touched")

    def __init__(self, epoch: str, generation: int, through: int) -> None:
        self.epoch = epoch
        self.generation = generation
        self.through = through
        self.touched: dict[str, int] = {}


class MemoryViewCache:
    """The ViewCache port in a dict; ``clock`` (seconds) drives expiry."""

    def __init__(
        self,
        *,
        ttl: float = 300.0,
        not_found_ttl: float = 5.0,
        tombstone_ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.not_found_ttl = not_found_ttl
        self.tombstone_ttl = tombstone_ttl
        self._clock = clock
        self._meta: dict[str, _Meta] = {}
        # (epoch, slot) -> (kind, position, body, expires at)
        self._entries: dict[tuple[str, Slot], tuple[str, int, bytes | None, float]] = {}
        self._watchers: list[Callable[[CacheNotice], None]] = []

    def _meta_of(self, projection: str) -> _Meta:
        meta = self._meta.get(projection)
        if meta is None:
            meta = self._meta[projection] = _Meta(secrets.token_hex(6), 0, 0)
        return meta

    def _held(self, epoch: str, slot: Slot) -> tuple[str, int, bytes | None] | None:
        held = self._entries.get((epoch, slot))
        if held is None:
            return None
        if held[3] <= self._clock():
            del self._entries[(epoch, slot)]
            return None
        return held[0], held[1], held[2]

    async def lookup(self, slot: Slot, *, epoch: str | None = None) -> Lookup:
        meta = self._meta_of(slot.projection)
        held = self._held(meta.epoch, slot)
        entry = None
        if held is not None and held[0] != _TOMBSTONE:
            entry = Entry(held[2], held[1])
        return Lookup(
            slot,
            entry,
            Ticket(meta.epoch, meta.generation, meta.through),
            meta.touched.get(slot.collection, 0) if slot.is_list else 0,
        )

    async def store(
        self, slot: Slot, entry: Entry, *, ticket: Ticket, generation: int
    ) -> StoreOutcome:
        meta = self._meta.get(slot.projection)
        if meta is None or meta.epoch != ticket.epoch:
            return StoreOutcome.MOVED
        if meta.generation == 0:
            meta.generation = generation
        elif meta.generation != generation:
            return StoreOutcome.MOVED
        position = entry.position
        held = self._held(meta.epoch, slot)
        if held is not None and held[1] > position:
            return StoreOutcome.OLDER
        if slot.is_list:
            if meta.touched.get(slot.collection, 0) > position:
                return StoreOutcome.OLDER
        elif held is None and position < meta.through:
            return StoreOutcome.OLDER
        kind, ttl = (_VALUE, self.ttl) if entry.body is not None else (_MISSING, self.not_found_ttl)
        self._entries[(meta.epoch, slot)] = (kind, position, entry.body, self._clock() + ttl)
        return StoreOutcome.STORED

    async def invalidate(self, invalidation: Invalidation) -> None:
        projection = invalidation.projection
        meta = self._meta.get(projection)
        checkpoint = invalidation.checkpoint
        if meta is not None and invalidation.generation < meta.generation:
            return  # a copy that is not served (a rebuild's, or a runner that lost its turn)
        if (
            meta is None
            or (invalidation.generation > meta.generation and meta.generation != 0)
            or meta.through < invalidation.after
        ):
            await self.reset(projection, invalidation.generation, checkpoint)
            return
        meta.generation = invalidation.generation
        expires = self._clock() + self.tombstone_ttl
        for collection, keys in invalidation.documents.items():
            for key in keys:
                slot = Slot(projection, collection, key)
                held = self._held(meta.epoch, slot)
                if held is None or held[1] < checkpoint:
                    self._entries[(meta.epoch, slot)] = (_TOMBSTONE, checkpoint, None, expires)
            if meta.touched.get(collection, 0) < checkpoint:
                meta.touched[collection] = checkpoint
        meta.through = max(meta.through, checkpoint)
        self._notify(
            Invalidated(
                projection,
                meta.epoch,
                invalidation.after,
                checkpoint,
                {c: frozenset(k) for c, k in invalidation.documents.items()},
            )
        )

    async def reset(
        self, projection: str, generation: int, checkpoint: int, *, force: bool = False
    ) -> None:
        meta = self._meta.get(projection)
        if meta is not None and generation < meta.generation and not force:
            return
        old = None if meta is None else meta.epoch
        meta = self._meta[projection] = _Meta(secrets.token_hex(6), generation, checkpoint)
        if old is not None:
            for held in [k for k in self._entries if k[0] == old and k[1].projection == projection]:
                del self._entries[held]
        self._notify(Reset(projection, meta.epoch, generation, checkpoint))

    async def watch(self, notify: Callable[[CacheNotice], None]) -> None:
        self._watchers.append(notify)
        notify(Listening())

    def _notify(self, notice: CacheNotice) -> None:
        for notify in list(self._watchers):
            notify(notice)

    async def close(self) -> None:
        self._watchers.clear()

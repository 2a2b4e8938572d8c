"""A read store (SQLite or PostgreSQL) with Redis in front, wired as bootstrap will wire it.

``World.commit`` does what a projection runner does for each batch: commit the views and
the checkpoint in one read-store transaction (recording the documents touched), advance
the position, then invalidate the cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from twofold.adapters.postgres.cache_reads import PostgresPositionedReader
from twofold.adapters.postgres.read_store import PostgresReadStore
from twofold.adapters.redis.cache import RedisViewCache
from twofold.adapters.sqlite.cache_reads import SQLitePositionedReader
from twofold.adapters.sqlite.read_store import SQLiteReadStore
from twofold.application.cache import CacheSettings, Loaded, PositionedReader
from twofold.application.cache_invalidation import CacheInvalidator, recording
from twofold.application.cache_views import CachedViews
from twofold.application.positions import PositionTracker
from twofold.application.views import Collection, ReadStore, ViewTransaction

ORDERS = Collection("orders", indexes={"status": str})


class HeldLoader:
    """A PositionedReader that, once ``hold()`` is called, keeps the next load's result
    until ``release()``: a reader stopped between its load and its store."""

    def __init__(self, inner: PositionedReader) -> None:
        self.inner = inner
        self.loaded = asyncio.Event()
        self._gate: asyncio.Event | None = None

    def hold(self) -> None:
        self._gate = asyncio.Event()
        self.loaded = asyncio.Event()

    def release(self) -> None:
        assert self._gate is not None
        self._gate.set()
        self._gate = None

    async def _held(self, loaded: Loaded) -> Loaded:
        gate = self._gate
        if gate is not None:
            self.loaded.set()
            await gate.wait()
        return loaded

    async def load_json(self, projection: str, collection: str, key: str) -> Loaded:
        return await self._held(await self.inner.load_json(projection, collection, key))

    async def load_find(self, projection: str, collection: str, **options: Any) -> Loaded:
        return await self._held(await self.inner.load_find(projection, collection, **options))

    async def load_count(self, projection: str, collection: str, **options: Any) -> Loaded:
        return await self._held(await self.inner.load_count(projection, collection, **options))


@dataclasses.dataclass
class World:
    store: ReadStore
    loader: HeldLoader
    cache: RedisViewCache
    views: CachedViews
    invalidator: CacheInvalidator
    positions: PositionTracker
    generation: int = 1
    checkpoint: int = 0

    async def commit(self, checkpoint: int, **documents: dict[str, Any] | None) -> None:
        """One batch of the ``orders`` projection: put (or delete, for None) documents."""

        def apply(tx: ViewTransaction) -> None:
            for key, document in documents.items():
                if document is None:
                    tx.delete("orders", key)
                else:
                    tx.put("orders", key, document)

        recorded, touched = recording(apply)
        await self.store.commit_batch(
            "orders", self.generation, recorded, checkpoint=checkpoint, last_event_at=None
        )
        after, self.checkpoint = self.checkpoint, checkpoint
        self.positions.advance("orders", checkpoint)
        await self.invalidator.committed(
            "orders", self.generation, after=after, checkpoint=checkpoint, touched=touched
        )

    async def rebuild(self, **documents: dict[str, Any]) -> None:
        """Fill a new generation with ``documents`` at the current checkpoint and switch."""
        generation = await self.store.begin_rebuild("orders", [ORDERS])

        def apply(tx: ViewTransaction) -> None:
            for key, document in documents.items():
                tx.put("orders", key, document)

        await self.store.commit_batch(
            "orders", generation, apply, checkpoint=self.checkpoint, last_event_at=None
        )
        # As the runner does: the cache abandons the old copy before the switch.
        await self.invalidator.reset("orders", generation, self.checkpoint)
        await self.store.switch("orders", generation)
        self.generation = generation
        self.positions.reset("orders", self.checkpoint)

    async def close(self) -> None:
        await self.invalidator.close()
        await self.cache.close()
        await self.loader.inner.close()  # type: ignore[attr-defined]
        await self.store.close()


async def open_store(kind: str, *, tmp_path: Path, postgres: tuple[str, str] | None) -> ReadStore:
    if kind == "sqlite":
        return await SQLiteReadStore.open(tmp_path / "views.db")
    assert postgres is not None
    url, schema = postgres
    return await PostgresReadStore.open(url, schema=schema)


async def open_world(
    kind: str,
    *,
    redis_url: str,
    settings: CacheSettings,
    tmp_path: Path,
    postgres: tuple[str, str] | None = None,
) -> World:
    store = await open_store(kind, tmp_path=tmp_path, postgres=postgres)
    await store.prepare("orders", [ORDERS])
    if isinstance(store, SQLiteReadStore):
        inner: PositionedReader = SQLitePositionedReader(store)
    else:
        assert isinstance(store, PostgresReadStore)
        inner = PostgresPositionedReader(store)
    loader = HeldLoader(inner)
    cache = RedisViewCache.open(redis_url, settings)
    positions = PositionTracker()
    views = CachedViews(
        store,
        loader,
        cache,
        owners={"orders": "orders"},
        settings=settings,
        positions=positions,
    )
    await views.start()
    invalidator = CacheInvalidator(cache, metrics=views.metrics, timeout=settings.timeout)
    return World(store, loader, cache, views, invalidator, positions)

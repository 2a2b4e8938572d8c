"""In-memory stand-ins for the cache's unit tests: a read store of one projection whose
reads can be held, and a cache that can be made to fail or hang."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twofold.adapters.memory.cache import MemoryViewCache
from twofold.application.cache import (
    CacheNotice,
    Entry,
    Invalidation,
    Loaded,
    Lookup,
    Slot,
    StoreOutcome,
    Ticket,
)
from twofold.application.views import Document
from twofold.codec import decode_json, encode_json


class FakeViews:
    """One projection's documents, its checkpoint and generation; a ViewReader and a
    PositionedReader. ``hold()`` makes the next loads wait, after reading, until
    ``release()``."""

    def __init__(self, projection: str = "orders") -> None:
        self.projection = projection
        self.docs: dict[tuple[str, str], bytes] = {}
        self.position = 0
        self.generation = 1
        self.loads = 0
        self.plain_reads = 0
        self._gate: asyncio.Event | None = None
        self.loaded = asyncio.Event()

    def commit(self, position: int, **documents: dict[str, Any] | None) -> dict[str, set[str]]:
        """Write ``orders`` documents (None deletes) at ``position``; the keys touched."""
        for key, document in documents.items():
            if document is None:
                self.docs.pop(("orders", key), None)
            else:
                self.docs[("orders", key)] = encode_json(document)
        self.position = position
        return {"orders": set(documents)}

    def hold(self) -> None:
        self._gate = asyncio.Event()
        self.loaded = asyncio.Event()

    def release(self) -> None:
        assert self._gate is not None
        self._gate.set()
        self._gate = None

    async def _held(self, loaded: Loaded) -> Loaded:
        self.loads += 1
        gate = self._gate
        self.loaded.set()
        if gate is not None:
            await gate.wait()
        return loaded

    # -- PositionedReader -----------------------------------------------------------------

    async def load_json(self, projection: str, collection: str, key: str) -> Loaded:
        body = self.docs.get((collection, key))
        return await self._held(Loaded(body, self.position, self.generation))

    async def load_find(
        self,
        projection: str,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
        order_by: Sequence[tuple[str, str]] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> Loaded:
        found = self._find(collection, where)
        return await self._held(Loaded(encode_json(found), self.position, self.generation))

    async def load_count(
        self,
        projection: str,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        between: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> Loaded:
        count = len(self._find(collection, where))
        return await self._held(Loaded(str(count).encode(), self.position, self.generation))

    def _find(self, collection: str, where: Mapping[str, Any] | None) -> list[Document]:
        found = []
        for (name, _), body in sorted(self.docs.items()):
            document = decode_json(body)
            if name == collection and all(document.get(f) == v for f, v in (where or {}).items()):
                found.append(document)
        return found

    # -- ViewReader -----------------------------------------------------------------------

    async def get(self, collection: str, key: str) -> Document | None:
        body = await self.get_json(collection, key)
        return None if body is None else decode_json(body)

    async def get_json(self, collection: str, key: str) -> bytes | None:
        self.plain_reads += 1
        return self.docs.get((collection, key))

    async def find(self, collection: str, **options: Any) -> list[Document]:
        self.plain_reads += 1
        return self._find(collection, options.get("where"))

    async def count(self, collection: str, **options: Any) -> int:
        self.plain_reads += 1
        return len(self._find(collection, options.get("where")))


class FlakyCache:
    """A MemoryViewCache that can be made to refuse (``down``) or hang (``stuck``)."""

    def __init__(self, inner: MemoryViewCache | None = None) -> None:
        self.inner = inner if inner is not None else MemoryViewCache()
        self.down = False
        self.stuck = False
        self.calls = 0

    async def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionError("Connection refused")
        if self.stuck:
            await asyncio.Event().wait()

    async def lookup(self, slot: Slot, *, epoch: str | None = None) -> Lookup:
        await self._check()
        return await self.inner.lookup(slot, epoch=epoch)

    async def store(
        self, slot: Slot, entry: Entry, *, ticket: Ticket, generation: int
    ) -> StoreOutcome:
        await self._check()
        return await self.inner.store(slot, entry, ticket=ticket, generation=generation)

    async def invalidate(self, invalidation: Invalidation) -> None:
        await self._check()
        await self.inner.invalidate(invalidation)

    async def reset(
        self, projection: str, generation: int, checkpoint: int, *, force: bool = False
    ) -> None:
        await self._check()
        await self.inner.reset(projection, generation, checkpoint, force=force)

    async def watch(self, notify: Callable[[CacheNotice], None]) -> None:
        await self.inner.watch(notify)

    async def close(self) -> None:
        await self.inner.close()

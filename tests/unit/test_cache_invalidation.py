"""The invalidation entry point: touched documents recorded, commits delivered in order,
kept and merged while the cache is away."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.unit.cache_fakes import FlakyCache
from twofold.adapters.memory.cache import MemoryViewCache
from twofold.application.cache import CacheState, Entry, Slot
from twofold.application.cache_invalidation import CacheInvalidator, recording
from twofold.application.views import Document, ViewTransaction
from twofold.records import RecordedEvent

DOC = Slot("orders", "orders", "o-1")


class DictTransaction:
    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], Document] = {}
        self.record: RecordedEvent = None  # type: ignore[assignment]

    def get(self, collection: str, key: str) -> Document | None:
        return self.docs.get((collection, key))

    def put(self, collection: str, key: str, document: Document) -> None:
        self.docs[(collection, key)] = document

    def delete(self, collection: str, key: str) -> None:
        self.docs.pop((collection, key), None)

    def find(self, collection: str, where: Mapping[str, Any]) -> list[Document]:
        return []


def test_recording_notes_the_documents_a_batch_puts_and_deletes() -> None:
    def apply(tx: ViewTransaction) -> None:
        tx.put("orders", "o-1", {"v": 1})
        tx.get("orders", "o-9")
        tx.delete("customers", "c-1")
        tx.put("orders", "o-2", {"v": 2})

    tx = DictTransaction()
    recorded, touched = recording(apply)
    recorded(tx)
    assert touched == {"orders": {"o-1", "o-2"}, "customers": {"c-1"}}
    assert tx.docs == {("orders", "o-1"): {"v": 1}, ("orders", "o-2"): {"v": 2}}
    recorded(DictTransaction())  # a retried batch records afresh
    assert touched == {"orders": {"o-1", "o-2"}, "customers": {"c-1"}}


async def _cached(cache: MemoryViewCache, position: int) -> str:
    lookup = await cache.lookup(DOC)
    await cache.store(DOC, Entry(b"{}", position), ticket=lookup.ticket, generation=1)
    return lookup.ticket.epoch


async def test_invalidations_wait_while_the_cache_is_away_and_arrive_merged() -> None:
    cache = FlakyCache()
    invalidator = CacheInvalidator(cache.inner)
    await invalidator.reset("orders", 1, 5)
    epoch = await _cached(cache.inner, 5)
    invalidator.cache = cache
    cache.down = True
    await invalidator.committed("orders", 1, after=5, checkpoint=6, touched={"orders": {"o-1"}})
    await invalidator.committed("orders", 1, after=6, checkpoint=7, touched={"orders": {"o-2"}})
    assert invalidator.pending == 1
    assert invalidator.status().state is CacheState.DEGRADED
    cache.down = False
    assert await invalidator.flush()
    lookup = await cache.inner.lookup(DOC)
    assert lookup.entry is None  # tombstoned by the merged invalidation, in the same epoch
    assert (lookup.ticket.epoch, lookup.ticket.through) == (epoch, 7)
    assert invalidator.status().state is CacheState.UP
    await invalidator.close()


async def test_too_many_waiting_documents_become_a_reset() -> None:
    cache = FlakyCache()
    invalidator = CacheInvalidator(cache, max_pending_keys=2)
    await invalidator.reset("orders", 1, 5)
    epoch = await _cached(cache.inner, 5)
    cache.down = True
    await invalidator.committed(
        "orders", 1, after=5, checkpoint=6, touched={"orders": {"a", "b", "c"}}
    )
    cache.down = False
    assert await invalidator.flush()
    lookup = await cache.inner.lookup(DOC)
    assert lookup.entry is None
    assert lookup.ticket.epoch != epoch and lookup.ticket.through == 6
    await invalidator.close()


async def test_commits_out_of_order_while_waiting_become_a_reset() -> None:
    cache = FlakyCache()
    invalidator = CacheInvalidator(cache)
    await invalidator.reset("orders", 1, 5)
    epoch = await _cached(cache.inner, 5)
    cache.down = True
    await invalidator.committed("orders", 1, after=5, checkpoint=6, touched={})
    await invalidator.committed("orders", 1, after=8, checkpoint=9, touched={})  # 6..8 lost
    cache.down = False
    assert await invalidator.flush()
    assert (await cache.inner.lookup(DOC)).ticket.epoch != epoch
    await invalidator.close()


async def test_a_failing_cache_never_fails_the_runner() -> None:
    cache = FlakyCache()
    cache.down = True
    invalidator = CacheInvalidator(cache)
    await invalidator.committed("orders", 1, after=0, checkpoint=1, touched={"orders": {"x"}})
    await invalidator.reset("orders", 2, 1)
    assert not await invalidator.flush()
    assert invalidator.metrics.errors >= 2
    await invalidator.close()


async def test_the_retry_task_delivers_once_the_cache_answers() -> None:
    cache = FlakyCache()
    invalidator = CacheInvalidator(cache, retry_after=0.001, max_retry_after=0.001)
    cache.down = True
    await invalidator.committed("orders", 1, after=0, checkpoint=1, touched={})
    cache.down = False
    retry = invalidator._retry
    assert retry is not None
    await retry  # ends when nothing waits any more
    assert invalidator.pending == 0
    assert invalidator.metrics.invalidations == 1
    await invalidator.close()

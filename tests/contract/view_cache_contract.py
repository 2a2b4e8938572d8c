"""The ViewCache contract: the rules of ``twofold.application.cache`` as tests.

Subclass ``ViewCacheContract`` (its name must start with ``Test``) and provide
``make_cache``: a fresh cache whose projections have never been seen. The ``cache``
fixture closes it after the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from twofold.application.cache import (
    CacheNotice,
    Entry,
    Invalidated,
    Invalidation,
    Listening,
    Reset,
    Slot,
    StoreOutcome,
    ViewCache,
)

DOC = Slot("orders", "orders", "o-1")
OTHER = Slot("orders", "orders", "o-2")
LIST = Slot("orders", "orders", "find:open", is_list=True)


class ViewCacheContract:
    async def make_cache(self) -> ViewCache:
        raise NotImplementedError

    @pytest_asyncio.fixture
    async def cache(self) -> AsyncIterator[ViewCache]:
        made = await self.make_cache()
        try:
            yield made
        finally:
            await made.close()

    async def _stored(
        self, cache: ViewCache, slot: Slot, body: bytes | None, position: int, generation: int = 1
    ) -> StoreOutcome:
        lookup = await cache.lookup(slot)
        return await cache.store(
            slot, Entry(body, position), ticket=lookup.ticket, generation=generation
        )

    async def _at(self, cache: ViewCache, checkpoint: int, generation: int = 1) -> None:
        """Bring the projection's meta to ``checkpoint`` (a reset, as after a switch)."""
        await cache.reset("orders", generation, checkpoint)

    # -- lookups and stores ---------------------------------------------------------------

    async def test_lookup_of_an_unknown_slot_finds_nothing(self, cache: ViewCache) -> None:
        lookup = await cache.lookup(DOC)
        assert lookup.entry is None
        assert lookup.fresh(0) is None

    async def test_a_stored_answer_is_found_with_its_position(self, cache: ViewCache) -> None:
        await self._at(cache, 5)
        assert await self._stored(cache, DOC, b'{"v":1}', 5) is StoreOutcome.STORED
        lookup = await cache.lookup(DOC)
        assert lookup.entry == Entry(b'{"v":1}', 5)
        assert lookup.fresh(5) == Entry(b'{"v":1}', 5)

    async def test_not_found_is_stored_as_an_answer_too(self, cache: ViewCache) -> None:
        await self._at(cache, 3)
        assert await self._stored(cache, DOC, None, 3) is StoreOutcome.STORED
        assert (await cache.lookup(DOC)).fresh(3) == Entry(None, 3)

    async def test_store_is_refused_when_the_cache_holds_a_newer_answer(
        self, cache: ViewCache
    ) -> None:
        await self._at(cache, 5)
        assert await self._stored(cache, DOC, b"new", 8) is StoreOutcome.STORED
        assert await self._stored(cache, DOC, b"old", 6) is StoreOutcome.OLDER
        assert (await cache.lookup(DOC)).entry == Entry(b"new", 8)

    async def test_an_entry_is_not_fresh_enough_for_a_position_past_it(
        self, cache: ViewCache
    ) -> None:
        await self._at(cache, 5)
        await self._stored(cache, DOC, b"v", 5)
        lookup = await cache.lookup(DOC)
        assert lookup.fresh(5) is not None
        assert lookup.fresh(6) is None

    # -- invalidation ---------------------------------------------------------------------

    async def test_the_refill_race_cannot_store_the_stale_answer(self, cache: ViewCache) -> None:
        await self._at(cache, 5)
        # A reader misses and loads the document at position 5 ...
        lookup = await cache.lookup(DOC)
        # ... a commit changes it (position 6) and is invalidated ...
        await cache.invalidate(Invalidation("orders", 1, 5, 6, {"orders": {"o-1"}}))
        # ... then the slow reader tries to store what it loaded.
        refused = await cache.store(DOC, Entry(b"stale", 5), ticket=lookup.ticket, generation=1)
        assert refused is StoreOutcome.OLDER
        assert (await cache.lookup(DOC)).entry is None

    async def test_invalidation_replaces_an_older_entry_with_a_tombstone(
        self, cache: ViewCache
    ) -> None:
        await self._at(cache, 5)
        await self._stored(cache, DOC, b"v5", 5)
        await cache.invalidate(Invalidation("orders", 1, 5, 7, {"orders": {"o-1"}}))
        assert (await cache.lookup(DOC)).entry is None
        # A reader that loaded at the commit or after may store.
        assert await self._stored(cache, DOC, b"v7", 7) is StoreOutcome.STORED
        assert (await cache.lookup(DOC)).entry == Entry(b"v7", 7)

    async def test_invalidation_keeps_an_entry_that_already_reflects_the_commit(
        self, cache: ViewCache
    ) -> None:
        await self._at(cache, 5)
        await self._stored(cache, DOC, b"v7", 7)  # loaded after the commit, before its notice
        await cache.invalidate(Invalidation("orders", 1, 5, 7, {"orders": {"o-1"}}))
        assert (await cache.lookup(DOC)).entry == Entry(b"v7", 7)

    async def test_an_untouched_entry_reflects_the_later_commits(self, cache: ViewCache) -> None:
        await self._at(cache, 5)
        await self._stored(cache, DOC, b"v", 5)
        await cache.invalidate(Invalidation("orders", 1, 5, 9, {"orders": {"o-2"}}))
        lookup = await cache.lookup(DOC)
        assert lookup.fresh(9) == Entry(b"v", 9)
        assert lookup.fresh(10) is None

    async def test_an_answer_older_than_the_invalidations_is_refused_when_unproven(
        self, cache: ViewCache
    ) -> None:
        await self._at(cache, 5)
        lookup = await cache.lookup(DOC)
        # Commits up to 9 were invalidated; nothing shows o-1 unchanged since 5.
        await cache.invalidate(Invalidation("orders", 1, 5, 9, {"orders": {"o-2"}}))
        refused = await cache.store(DOC, Entry(b"v", 5), ticket=lookup.ticket, generation=1)
        assert refused is StoreOutcome.OLDER

    async def test_a_gap_in_invalidations_abandons_the_entries(self, cache: ViewCache) -> None:
        await self._at(cache, 5)
        await self._stored(cache, DOC, b"v", 5)
        before = (await cache.lookup(DOC)).ticket
        # The invalidation of (5, 8] was lost; this one covers (8, 9].
        await cache.invalidate(Invalidation("orders", 1, 8, 9, {"orders": {"o-2"}}))
        lookup = await cache.lookup(DOC)
        assert lookup.entry is None
        assert lookup.ticket.epoch != before.epoch
        assert lookup.ticket.through == 9

    async def test_list_answers_go_stale_when_their_collection_is_touched(
        self, cache: ViewCache
    ) -> None:
        await self._at(cache, 5)
        assert await self._stored(cache, LIST, b"[]", 5) is StoreOutcome.STORED
        assert (await cache.lookup(LIST)).fresh(5) == Entry(b"[]", 5)
        await cache.invalidate(Invalidation("orders", 1, 5, 6, {"orders": {"o-9"}}))
        assert (await cache.lookup(LIST)).fresh(0) is None
        assert await self._stored(cache, LIST, b"[]", 5) is StoreOutcome.OLDER
        assert await self._stored(cache, LIST, b"[1]", 6) is StoreOutcome.STORED
        assert (await cache.lookup(LIST)).fresh(6) == Entry(b"[1]", 6)

    async def test_other_collections_lists_stay_fresh(self, cache: ViewCache) -> None:
        await self._at(cache, 5)
        await self._stored(cache, LIST, b"[]", 5)
        await cache.invalidate(Invalidation("orders", 1, 5, 6, {"customers": {"c-1"}}))
        assert (await cache.lookup(LIST)).fresh(6) == Entry(b"[]", 6)

    # -- generations and resets -----------------------------------------------------------

    async def test_a_reset_hides_every_entry_and_refuses_earlier_lookups(
        self, cache: ViewCache
    ) -> None:
        await self._at(cache, 5)
        await self._stored(cache, DOC, b"gen1", 5)
        slow = await cache.lookup(OTHER)
        await cache.reset("orders", 2, 5)  # the switch to a rebuilt copy
        assert (await cache.lookup(DOC)).entry is None
        moved = await cache.store(OTHER, Entry(b"gen1", 5), ticket=slow.ticket, generation=1)
        assert moved is StoreOutcome.MOVED
        assert (await cache.lookup(OTHER)).entry is None

    async def test_an_answer_of_another_generation_is_never_stored(self, cache: ViewCache) -> None:
        await cache.reset("orders", 2, 5)
        lookup = await cache.lookup(DOC)
        moved = await cache.store(DOC, Entry(b"gen1", 5), ticket=lookup.ticket, generation=1)
        assert moved is StoreOutcome.MOVED
        assert await self._stored(cache, DOC, b"gen2", 5, generation=2) is StoreOutcome.STORED

    async def test_invalidations_of_an_older_generation_are_ignored(self, cache: ViewCache) -> None:
        await cache.reset("orders", 2, 5)
        await self._stored(cache, DOC, b"gen2", 5, generation=2)
        await cache.invalidate(Invalidation("orders", 1, 5, 6, {"orders": {"o-1"}}))
        assert (await cache.lookup(DOC)).entry == Entry(b"gen2", 5)

    async def test_an_invalidation_of_a_newer_generation_starts_a_new_epoch(
        self, cache: ViewCache
    ) -> None:
        await self._at(cache, 5)
        await self._stored(cache, DOC, b"gen1", 5)
        await cache.invalidate(Invalidation("orders", 2, 5, 6, {"orders": {"o-2"}}))
        lookup = await cache.lookup(DOC)
        assert lookup.entry is None
        assert lookup.ticket.generation == 2

    async def test_a_reset_to_an_older_generation_is_ignored_unless_forced(
        self, cache: ViewCache
    ) -> None:
        await cache.reset("orders", 3, 9)
        await self._stored(cache, DOC, b"gen3", 9, generation=3)
        await cache.reset("orders", 1, 2)  # a late caller
        assert (await cache.lookup(DOC)).ticket.generation == 3
        assert (await cache.lookup(DOC)).entry == Entry(b"gen3", 9)
        await cache.reset("orders", 1, 2, force=True)  # the runner of a store made anew
        lookup = await cache.lookup(DOC)
        assert lookup.entry is None
        assert (lookup.ticket.generation, lookup.ticket.through) == (1, 2)
        assert await self._stored(cache, DOC, b"gen1", 2, generation=1) is StoreOutcome.STORED

    async def test_projections_do_not_share_entries(self, cache: ViewCache) -> None:
        await self._at(cache, 5)
        await self._stored(cache, DOC, b"v", 5)
        elsewhere = Slot("billing", "orders", "o-1")
        assert (await cache.lookup(elsewhere)).entry is None

    # -- notices --------------------------------------------------------------------------

    async def test_watchers_hear_of_invalidations_and_resets(self, cache: ViewCache) -> None:
        heard: asyncio.Queue[CacheNotice] = asyncio.Queue()
        await cache.watch(heard.put_nowait)
        async with asyncio.timeout(30):  # a deadline, not a measurement
            assert isinstance(await heard.get(), Listening)
            await cache.reset("orders", 1, 5)
            reset = await heard.get()
            assert isinstance(reset, Reset)
            assert (reset.projection, reset.generation, reset.checkpoint) == ("orders", 1, 5)
            await cache.invalidate(Invalidation("orders", 1, 5, 6, {"orders": {"o-1", "o-2"}}))
            invalidated = await heard.get()
        assert isinstance(invalidated, Invalidated)
        assert invalidated.epoch == reset.epoch
        assert (invalidated.after, invalidated.checkpoint) == (5, 6)
        assert {c: set(k) for c, k in invalidated.documents.items()} == {"orders": {"o-1", "o-2"}}

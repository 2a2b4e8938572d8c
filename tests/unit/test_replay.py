"""Replays (catch-up, rebuild) read the log one page ahead, and a rebuild reports progress."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

import pytest

from twofold import (
    Codec,
    Event,
    NewEvent,
    Projection,
    ProjectionRunner,
    ProjectionStatus,
    ViewTransaction,
    uuid7,
    when,
)
from twofold import (
    Collection as ViewCollection,
)
from twofold.adapters.memory.event_store import InMemoryEventStore
from twofold.adapters.sqlite.read_store import SQLiteReadStore
from twofold.application.pages import PageReader
from twofold.codec import encode_json
from twofold.records import ANY, RecordedEvent


class Ticked(Event):
    label: str


class Ticks(Projection):
    name = "ticks"
    collections = (ViewCollection("ticks"),)
    batch_size = 3
    retries = 0

    @when(Ticked)
    def _ticked(self, event: Ticked, tx: ViewTransaction) -> None:
        if event.label == "poison":
            raise RuntimeError("cannot take poison")
        tx.put("ticks", event.label, {"position": tx.record.position})


class CountingStore(InMemoryEventStore):
    """The in-memory event store, noting where each ``read_all`` starts; its head may be
    told to lag (as a head read before more events came in)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[int] = []
        self.stale_heads: list[int] = []

    async def read_all(
        self, *, after: int = 0, limit: int = 1000, types: Collection[str] | None = None
    ) -> list[RecordedEvent]:
        self.reads.append(after)
        return await super().read_all(after=after, limit=limit, types=types)

    async def head_position(self) -> int:
        if self.stale_heads:
            return self.stale_heads.pop(0)
        return await super().head_position()


Stores = tuple[CountingStore, SQLiteReadStore]


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    events = CountingStore()
    views = await SQLiteReadStore.open(tmp_path / "views.db")
    yield events, views
    await views.close()
    await events.close()


async def tick(store: InMemoryEventStore, *labels: str) -> None:
    for label in labels:
        event = NewEvent(event_id=uuid7(), type="Ticked", data=encode_json(Ticked(label=label)))
        await store.append(f"clock-{label}", [event], expected_version=ANY)


def runner_for(stores: Stores) -> ProjectionRunner:
    events, views = stores
    return ProjectionRunner(Ticks(), event_store=events, read_store=views, codec=Codec())


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def test_catch_up_reads_each_page_once_and_applies_every_event(stores: Stores) -> None:
    events, views = stores
    await tick(events, *"abcdefghij")
    runner = runner_for(stores)
    assert await runner.catch_up() == 10
    # Each full page started the read of the next one; the short last page did not.
    assert events.reads == [0, 3, 6, 9, 10]
    assert await views.count("ticks") == 10
    assert (await views.get("ticks", "j")) == {"position": 10}
    assert other_tasks() == set()


async def test_a_stop_midway_drops_the_page_read_ahead(stores: Stores) -> None:
    events, views = stores
    await tick(events, "a", "b", "poison", "c", "d", "e", "f")
    runner = runner_for(stores)
    assert await runner.catch_up() == 2
    assert runner.status is ProjectionStatus.STOPPED
    # The next page was being read while the first applied; nothing of it was applied,
    # and its read ended with the catch-up.
    assert events.reads == [0, 3]
    assert await views.get("ticks", "c") is None
    assert other_tasks() == set()


async def test_a_read_ahead_for_another_position_is_not_used() -> None:
    events = CountingStore()
    await tick(events, *"abcdef")
    pages = PageReader(events, 2)
    first = await pages.after(0)
    assert [e.position for e in first] == [1, 2]
    # The checkpoint moved elsewhere (say, another process rebuilt): read from there.
    again = await pages.after(1)
    assert [e.position for e in again] == [2, 3]
    ahead = await pages.after(3)
    assert [e.position for e in ahead] == [4, 5]
    await pages.close()
    assert events.reads == [0, 2, 1, 3, 5]
    assert other_tasks() == set()


async def test_rebuild_reports_progress_up_to_the_head(stores: Stores) -> None:
    events, views = stores
    await tick(events, *"abcdefghij")
    runner = runner_for(stores)
    await runner.catch_up()
    seen: list[tuple[int, int]] = []
    assert await runner.rebuild(progress=lambda done, total: seen.append((done, total))) == 10
    assert seen == [(3, 10), (6, 10), (9, 10), (10, 10)]
    assert await views.count("ticks") == 10


async def test_rebuild_progress_follows_a_log_that_grew(stores: Stores) -> None:
    events, _ = stores
    await tick(events, *"abcdefg")
    runner = runner_for(stores)
    await runner.start()
    events.stale_heads = [4]  # the head as read before the last three events came in
    seen: list[tuple[int, int]] = []
    await runner.rebuild(progress=lambda done, total: seen.append((done, total)))
    assert seen == [(3, 4), (6, 7), (7, 7)]


async def test_rebuild_of_an_empty_log_reports_done(stores: Stores) -> None:
    runner = runner_for(stores)
    await runner.start()
    seen: list[tuple[int, int]] = []
    assert await runner.rebuild(progress=lambda done, total: seen.append((done, total))) == 0
    assert seen == [(0, 0)]


async def test_an_error_of_the_progress_callback_ends_the_rebuild_and_the_old_copy_serves(
    stores: Stores,
) -> None:
    events, views = stores
    await tick(events, *"abcdef")
    runner = runner_for(stores)
    await runner.catch_up()

    def broken(done: int, total: int) -> None:
        raise RuntimeError("the terminal went away")

    with pytest.raises(RuntimeError, match="terminal went away"):
        await runner.rebuild(progress=broken)
    state = await views.state("ticks")
    assert (state.generation, state.checkpoint) == (1, 6)
    assert await views.count("ticks") == 6
    assert other_tasks() == set()

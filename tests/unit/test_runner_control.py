"""A following runner looks at its stored state between events (pause, releases made
elsewhere, a switched copy) without ever losing an event that arrives meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_projection_failures import Notes, note
from twofold import Codec, PositionTracker, ProjectionRunner
from twofold.adapters.memory.event_store import InMemoryEventStore
from twofold.adapters.sqlite.read_store import SQLiteReadStore
from twofold.application.views import ProjectionState


class AppendingOnLook:
    """The read store; while ``state`` is read (the runner's look), once armed, an event
    is appended and delivered to the runner's queue before the look returns."""

    def __init__(self, inner: SQLiteReadStore, events: InMemoryEventStore) -> None:
        self.inner = inner
        self.events = events
        self.armed = False

    async def state(self, projection: str) -> ProjectionState:
        if self.armed:
            self.armed = False
            await note(self.events, "s-2", "arrives during the look")
            for _ in range(20):  # the subscription delivers it: the runner's get completes
                await asyncio.sleep(0)
        return await self.inner.state(projection)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[InMemoryEventStore, SQLiteReadStore]]:
    events = InMemoryEventStore()
    views = await SQLiteReadStore.open(tmp_path / "views.db")
    yield events, views
    await views.close()
    await events.close()


async def test_an_event_arriving_while_the_runner_looks_is_applied(
    stores: tuple[InMemoryEventStore, SQLiteReadStore],
) -> None:
    events, views = stores
    watched = AppendingOnLook(views, events)
    positions = PositionTracker()
    runner = ProjectionRunner(
        Notes(), event_store=events, read_store=watched, codec=Codec(), positions=positions
    )
    await note(events, "s-1", "first")
    task = asyncio.create_task(runner.run())
    try:
        await positions.wait(["notes"], 1, timeout=30)
        watched.armed = True
        runner.poke()  # look now: the event appended during the look must not be lost
        await positions.wait(["notes"], 2, timeout=30)
        assert await views.get("notes", "arrives during the look") is not None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

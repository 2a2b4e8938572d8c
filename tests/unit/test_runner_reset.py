"""A reset made in the process whose runner follows the log refills the views from the
start, not only from the events that come after it."""

from __future__ import annotations

import asyncio
import contextlib

from tests.unit.test_projection_failures import Notes, Stores, note, stores
from twofold import Codec, PositionTracker, ProjectionRunner

__all__ = ["stores"]  # the fixture, used by name


async def test_a_reset_while_following_replays_the_whole_log(stores: Stores) -> None:
    events, views = stores
    positions = PositionTracker()
    runner = ProjectionRunner(
        Notes(), event_store=events, read_store=views, codec=Codec(), positions=positions
    )
    for text in ("a", "b"):
        await note(events, "s-1", text)
    task = asyncio.create_task(runner.supervise())
    try:
        await positions.wait(["notes"], 2, timeout=30)
        await runner.reset()  # the runner is following the log: its subscription is past 2
        await note(events, "s-2", "c")
        await positions.wait(["notes"], 3, timeout=30)
        found = await views.find("notes", order_by=[("key", "asc")])
        assert [d["position"] for d in found] == [1, 2, 3]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

"""Waiting for projections: woken by the runner's advance, never by polling."""

from __future__ import annotations

import asyncio

import pytest

from twofold import ConsistencyTimeoutError, PositionTracker


async def test_waiter_wakes_when_position_is_reached() -> None:
    tracker = PositionTracker()
    waiting = asyncio.create_task(tracker.wait(["a"], 5, timeout=5))
    await asyncio.sleep(0)
    tracker.advance("a", 4)
    await asyncio.sleep(0)
    assert not waiting.done()
    tracker.advance("a", 5)
    await asyncio.wait_for(waiting, 1)


async def test_wait_covers_every_projection_read() -> None:
    tracker = PositionTracker()
    tracker.advance("a", 10)
    waiting = asyncio.create_task(tracker.wait(["a", "b"], 3, timeout=5))
    await asyncio.sleep(0)
    assert not waiting.done()
    tracker.advance("b", 3)
    await asyncio.wait_for(waiting, 1)


async def test_timeout_names_lagging_projection() -> None:
    tracker = PositionTracker()
    tracker.advance("a", 2)
    with pytest.raises(ConsistencyTimeoutError) as caught:
        await tracker.wait(["a"], 9, timeout=0.01)
    assert (caught.value.projection, caught.value.current, caught.value.behind) == ("a", 2, 7)


async def test_position_never_moves_backwards_on_advance() -> None:
    tracker = PositionTracker()
    tracker.advance("a", 5)
    tracker.advance("a", 3)
    assert tracker.position("a") == 5


async def test_reset_wakes_waiters_it_satisfies() -> None:
    tracker = PositionTracker()
    waiting = asyncio.create_task(tracker.wait(["a"], 4, timeout=5))
    await asyncio.sleep(0)
    tracker.reset("a", 4)
    await asyncio.wait_for(waiting, 1)
